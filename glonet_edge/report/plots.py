"""Shared matplotlib helpers: headless (Agg), imported only when a plot is drawn.

    fig, (ax,) = new_figure()
    ax.plot(...)
    png = finish(fig, out / "train_speed.png")     # PNG bytes, also written atomically

matplotlib is the `report` extra; without it a clear error names the install command.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from ..errors import require
from ..fileio import atomic_write_bytes


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed, safe in threads-free CLIs)."""
    matplotlib = require("matplotlib", "report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(ncols: int = 1, width: float = 6.4, height: float = 4.0, nrows: int = 1) -> tuple[Any, list[Any]]:
    """A grid of nrows x ncols axes, each `width` x `height` inches, returned as a flat list."""
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, [ax for row in axes for ax in row]


def finish(fig: Any, path: str | Path | None = None, dpi: int = 110) -> bytes:
    """Lay out, render to PNG, close the figure (frees its memory), optionally write `path`."""
    plt = pyplot()
    buf = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    png = buf.getvalue()
    if path is not None:
        atomic_write_bytes(path, png)
    return png


def data_uri(png: bytes) -> str:
    """`data:` URI that embeds a PNG in an HTML page (no file or network access needed)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def depth_axis(ax: Any, depths: list[int], log: bool = True) -> None:
    """x axis labelled with exactly the measured depths (plain numbers, also on a log scale)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    if log:
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(depths))))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("depth (blocks)")


def plain_log(ax: Any, axis: str = "y") -> None:
    """Log scale on `axis` with plain decimal labels (0.5, 2, 50) instead of 10^x; minor ticks
    labelled at 2 and 5."""
    import math

    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _pos: int) -> str:
        return f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(minor))


def integer_x(ax: Any) -> None:
    """Only whole numbers on the x axis (depths, blocks, epochs)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# Offsets (points) tried in order for a point's label: beside, above, below, then further out.
LABEL_OFFSETS = ((4, 3), (4, -11), (-11, 3), (-11, -11), (4, 10), (-4, -18), (10, -4), (-18, -4))


def _overlaps(box: tuple[float, float, float, float], boxes: list[tuple[float, float, float, float]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def _frozen_legend(ax: Any) -> list[tuple[float, float, float, float]]:
    """The legend's box, as a place labels must avoid. Its 'best' spot also avoids texts, so it
    is pinned where it is now: labels drawn next would otherwise push it onto a curve."""
    legend = ax.get_legend()
    if legend is None:
        return []
    ax.figure.canvas.draw()  # resolves loc='best'
    box = legend.get_window_extent()
    legend.set_loc(tuple(ax.transAxes.inverted().transform((box.x0, box.y0))))
    return [tuple(box.extents)]


def place_labels(ax: Any, points: list[tuple[float, float, str]], fontsize: float = 7) -> int:
    """Annotate each (x, y, text) at the first offset where the label overlaps neither an earlier
    label nor another point's marker; a label with no free place is left out (the table lists
    every value). A greedy stand-in for adjustText, which the report does not depend on.
    Returns how many labels were drawn."""
    fig = ax.figure
    fig.tight_layout()  # place in the final layout (finish() lays out the same way)
    px = fig.dpi / 72.0  # display pixels per point
    xy = [tuple(ax.transData.transform((x, y))) for x, y, _ in points]
    r = 3 * px  # a marker's half size
    taken = [(cx - r, cy - r, cx + r, cy + r) for cx, cy in xy] + _frozen_legend(ax)
    inside = ax.bbox.extents  # a label outside the axes would be cut off or run into the next panel
    placed = 0
    for (x, y, text), (cx, cy) in zip(points, xy):
        w, h = 0.62 * fontsize * len(text) * px, fontsize * px  # glyph box estimate, no renderer needed
        own = (cx - r, cy - r, cx + r, cy + r)
        for dx, dy in LABEL_OFFSETS:
            box = (cx + dx * px, cy + dy * px, cx + dx * px + w, cy + dy * px + h)
            fits = inside[0] <= box[0] and box[2] <= inside[2] and inside[1] <= box[1] and box[3] <= inside[3]
            if fits and not _overlaps(box, [b for b in taken if b != own]):
                ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            va="bottom", ha="left")
                taken.append(box)
                placed += 1
                break
    return placed

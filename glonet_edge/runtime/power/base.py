"""What every power source returns (`PowerState`), the source interface, and sysfs helpers.

A source reads a filesystem *root* (default "/") so tests can point it at a fake tree laid
out exactly like the real device; nothing here imports anything beyond the standard library.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

from ...errors import GlonetError

Clock = Callable[[], float]

# Physically plausible ranges; a reading outside them is a broken sensor, not a state.
_RANGES: dict[str, tuple[float, float]] = {
    "battery_pct": (0.0, 100.5),  # some fuel gauges report 100.4 right after a charge
    "power_w": (0.0, 100_000.0),
    "power_budget_w": (0.0, 100_000.0),
    "temp_c": (-60.0, 200.0),  # jtop reports -256 for an offline zone: that is "no reading"
}


class SensorError(GlonetError):
    """A sensor exists but could not be read, or returned a value that cannot be right."""


@dataclass(frozen=True)
class PowerState:
    """One reading of the device's power situation. `None` means "this source cannot tell".

    `stale` marks a state repeated from an earlier good reading because the sensor failed
    (see ResilientSource); `details` holds source-specific extras (rails, zones, errors).
    """

    source: str
    on_battery: bool | None = None
    battery_pct: float | None = None
    power_w: float | None = None  # what the device draws now
    power_budget_w: float | None = None  # the cap it runs under (nvpmodel mode, GPU limit)
    power_mode: str | None = None
    temp_c: float | None = None
    throttled: bool | None = None
    timestamp: float = 0.0
    device: str | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    stale: bool = False

    FIELDS: ClassVar[tuple[str, ...]] = ("on_battery", "battery_pct", "power_w", "power_budget_w", "power_mode", "temp_c",
              "throttled", "device")

    @classmethod
    def unknown(cls, source: str = "unknown", reason: str = "", timestamp: float | None = None) -> "PowerState":
        details = {"reason": reason} if reason else {}
        return cls(source=source, timestamp=time.time() if timestamp is None else timestamp, details=details)

    @property
    def is_unknown(self) -> bool:
        """True when the state says nothing the policy could use."""
        return all(getattr(self, f) is None for f in self.FIELDS if f != "device")

    def validated(self) -> "PowerState":
        """Return self, or raise SensorError naming the field that holds an impossible value."""
        for name, (lo, hi) in _RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not lo <= value <= hi:
                raise SensorError(f"{self.source}: {name}={value!r} is outside the plausible range [{lo}, {hi}]")
        for name in ("on_battery", "throttled"):
            if getattr(self, name) not in (None, True, False):
                raise SensorError(f"{self.source}: {name}={getattr(self, name)!r} is not a boolean")
        return self

    def merged_with(self, other: "PowerState") -> "PowerState":
        """Fill this state's unknown fields from `other` (self wins where both know)."""
        filled = {f: getattr(other, f) for f in self.FIELDS if getattr(self, f) is None and getattr(other, f) is not None}
        if not filled:
            return self
        details = dict(self.details)
        details.setdefault("filled_from", {}).update({f: other.source for f in filled})
        return replace(self, **filled, details=details)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One human-readable line, for logs and `glonet run`."""
        parts = []
        if self.on_battery is not None:
            parts.append("on battery" if self.on_battery else "on AC")
        if self.battery_pct is not None:
            parts.append(f"{self.battery_pct:.0f}%")
        if self.power_w is not None:
            parts.append(f"{self.power_w:.1f} W")
        if self.power_mode is not None:
            parts.append(f"mode {self.power_mode}")
        if self.temp_c is not None:
            parts.append(f"{self.temp_c:.0f} °C")
        if self.throttled:
            parts.append("throttled")
        body = ", ".join(parts) if parts else "unknown"
        return f"{self.source}: {body}{' (stale)' if self.stale else ''}"


class PowerSource:
    """Reads the power situation. Subclasses implement `read()` (and `probe()` when cheap
    detection differs from a full read). `read()` may raise; wrap in ResilientSource to serve."""

    name = "base"

    def __init__(self, root: str | Path = "/", clock: Clock = time.time) -> None:
        self.root = Path(root)
        self.clock = clock

    def read(self) -> PowerState:  # pragma: no cover - interface
        raise NotImplementedError

    def probe(self) -> bool:
        """Whether this source can say anything on this machine (used by `auto`)."""
        try:
            return not self.read().validated().is_unknown
        except Exception:  # noqa: BLE001 - a probe answers yes/no, whatever broke
            return False

    def close(self) -> None:
        """Release handles (NVML, jtop); sysfs sources hold none."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"

    # ---- sysfs helpers -----------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def glob(self, pattern: str) -> list[Path]:
        return sorted(self.root.glob(pattern.lstrip("/")))

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()


MAX_READ_BYTES = 1 << 20  # sysfs attributes are <= one page; nvpmodel.conf files are tens of kB


def read_bounded(path: Path, limit: int = MAX_READ_BYTES) -> bytes:
    """At most `limit` bytes of a file, without blocking: O_NONBLOCK makes a FIFO with no
    writer read as empty instead of hanging, and the bound keeps a runaway file (or a link to
    /dev/zero) from filling memory. Raises OSError like open()."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb", buffering=0) as fh:
        chunks, left = [], limit
        while left > 0:
            chunk = fh.read(min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def read_text(path: Path) -> str:
    """Read a sysfs/procfs attribute; device-tree strings end in NUL, which is stripped."""
    try:
        return read_bounded(path).decode("utf-8", errors="replace").replace("\x00", "").strip()
    except OSError as exc:
        raise SensorError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_number(path: Path) -> float:
    """Read a numeric attribute. Some drivers append a unit ("32760 ma"): the first token counts."""
    text = read_text(path)
    token = text.split()[0] if text else ""
    try:
        value = float(token)
    except ValueError:
        raise SensorError(f"{path} holds {text[:40]!r}, not a number") from None
    if not math.isfinite(value):
        raise SensorError(f"{path} holds {text[:40]!r}, not a finite number")
    return value


def optional_number(path: Path) -> float | None:
    """A numeric attribute that may legitimately be absent (None); present but broken raises."""
    return read_number(path) if path.exists() else None


def first_error(errors: Iterable[str]) -> str:
    errors = list(errors)
    return errors[0] if len(errors) == 1 else f"{errors[0]} (+{len(errors) - 1} more)"


# ---- field values as written by people (override strings, trace CSV cells) -----------------------
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
BOOL_FIELDS = ("on_battery", "throttled")
NUMBER_FIELDS = ("battery_pct", "power_w", "power_budget_w", "temp_c")
TEXT_FIELDS = ("power_mode", "device")


def parse_field(name: str, raw: Any) -> bool | float | str:
    """Turn one user-written value into the PowerState field's type, or raise ValueError with
    a message that says what was expected (callers add where it came from)."""
    if name in BOOL_FIELDS:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{name} must be 0 or 1 (or true/false), got {str(raw)[:40]!r}")
    if name in NUMBER_FIELDS:
        if isinstance(raw, bool):
            raise ValueError(f"{name} must be a number, got {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON int beyond float range
            raise ValueError(f"{name} must be a number, got {str(raw)[:40]!r}") from None
        lo, hi = _RANGES[name]
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"{name} must be within [{lo:g}, {hi:g}], got {str(raw)[:40]!r}")
        return value
    if name in TEXT_FIELDS:
        text = str(raw).strip()
        if not text or not text.isprintable():
            raise ValueError(f"{name} must be a non-empty printable string, got {str(raw)[:40]!r}")
        return text
    raise ValueError(f"unknown field {name!r}; known: {', '.join(BOOL_FIELDS + NUMBER_FIELDS + TEXT_FIELDS)}")

"""Progress bars for long work: a tqdm bar, or None when disabled or tqdm is not installed
(the runtime's devices need not have it); callers update the bar only when there is one."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> Any | None:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, leave=False)

"""Intel/AMD RAPL energy counters through the powercap class.

/sys/class/powercap/intel-rapl:N/ (kernel Documentation/power/powercap/powercap.rst) has
`name` ("package-0", or "psys" for the whole platform on recent laptops), `energy_uj` (a
cumulative counter in µJ) and `max_energy_range_uj` (the counter's range: past it, it wraps
back to 0). Power is the energy difference over the time between two reads, so the first read
has none. `energy_uj` can also be reset by writing "0": a drop that a wrap cannot explain in
one interval (more than half the range) is a reset, and that interval has no power.
`enabled` switches the zone's power *limits* on or off, not its counter, so it is not read.
Sub-zones (intel-rapl:0:0, "core") are parts of their package and are not added again;
intel-rapl-mmio:N zones repeat the package through another interface and are not read.
Since Linux 5.10 `energy_uj` is readable by root only (CVE-2020-8694): unprivileged, this
source is simply not available and `auto` moves on.
"""

from __future__ import annotations

import time
from pathlib import Path

from .base import Clock, PowerSource, PowerState, SensorError, read_number, read_text

DOMAIN_GLOB = "sys/class/powercap/intel-rapl:*"


class RaplSource(PowerSource):
    name = "rapl"

    def __init__(self, root: str | Path = "/", clock: Clock = time.time, monotonic: Clock = time.monotonic) -> None:
        super().__init__(root, clock)
        self.monotonic = monotonic
        self._last: tuple[float, dict[str, float]] | None = None

    def _domains(self) -> dict[str, Path]:
        """Top-level domains only (intel-rapl:0, not the intel-rapl:0:0 sub-zones they contain).
        A "psys" domain covers the whole platform, packages included, so it is used alone."""
        top = {read_text(d / "name"): d for d in self.glob(DOMAIN_GLOB) if d.name.count(":") == 1}
        if "psys" in top:
            return {"psys": top["psys"]}
        return {name: d for name, d in top.items() if name.startswith("package")}

    def read(self) -> PowerState:
        domains = self._domains()
        if not domains:
            raise SensorError(f"no RAPL package domains under {self.path('sys/class/powercap')}")
        now = self.monotonic()
        energy = {name: read_number(d / "energy_uj") for name, d in domains.items()}
        power_w = None
        if self._last is not None and now > self._last[0] and self._last[1].keys() == energy.keys():
            joules = [self._joules(domains[name], self._last[1][name], e) for name, e in energy.items()]
            if None not in joules:
                power_w = sum(joules) / (now - self._last[0])
        self._last = (now, energy)
        return PowerState(source=self.name, power_w=power_w, timestamp=self.clock(),
                          details={"domains": sorted(domains)})

    @staticmethod
    def _joules(domain: Path, before_uj: float, after_uj: float) -> float | None:
        """Energy between two counter reads; None when the counter was reset in between."""
        delta = after_uj - before_uj
        if delta < 0:  # wrapped at max_energy_range_uj, or reset to 0
            max_range = read_number(domain / "max_energy_range_uj")
            delta += max_range
            if not 0 <= delta <= max_range / 2:
                return None
        return delta / 1e6

    def probe(self) -> bool:
        try:
            self.read()  # a first read primes the counter and proves energy_uj is readable
            return True
        except SensorError:
            return False

"""Energy sensors: a cumulative counter in joules read before and after a timed call.

NVIDIA GPUs: NVML's total energy counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ).
CPUs: the package counters of Linux RAPL powercap (`/sys/class/powercap/intel-rapl:N/energy_uj`),
which count the whole CPU package (other processes included). Anywhere else there is no reading
and `reason` says why: energy is never estimated.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


class EnergySensor:
    """A cumulative energy counter in joules, or `None` readings with a reason.

    `read()` returns the counter (J) or None; `reason` says why there is none and `source`
    what a reading measures.
    """

    def __init__(self, device: Any, powercap_root: str | Path = "/sys/class/powercap") -> None:
        self.reason = ""
        self.source = ""
        self._read: Callable[[], float] | None = None
        if device.platform == "gpu" and "nvidia" in str(device.device_kind).lower():
            self._init_nvml(device)
        elif device.platform == "cpu":
            self._init_rapl(Path(powercap_root))
        else:
            self.reason = f"no energy sensor on {device.platform} ({device.device_kind})"

    @property
    def available(self) -> bool:
        return self._read is not None

    def read(self) -> float | None:
        return None if self._read is None else self._read()

    def _init_nvml(self, device: Any) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index(device))
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises if unsupported
        except Exception as err:  # pynvml raises NVMLError subclasses, ImportError, ...
            self.reason = f"NVML energy counter not available: {type(err).__name__}: {err}"
            return
        self.source = "NVML total energy counter of the GPU"
        self._read = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3

    def _init_rapl(self, root: Path) -> None:
        # Top-level zones are CPU packages; "intel-rapl:0:0" etc. are sub-domains of them.
        zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not zones:
            self.reason = f"no energy sensor on cpu ({root}/intel-rapl:* not present)"
            return
        try:
            ranges = [int((z / "max_energy_range_uj").read_text()) for z in zones]
            last = [int((z / "energy_uj").read_text()) for z in zones]
        except (OSError, ValueError) as err:
            self.reason = f"RAPL not readable: {type(err).__name__}: {err}"
            return
        total = [0.0]

        def read() -> float:
            # Accumulate deltas so that a counter wrapping at max_energy_range_uj stays exact.
            for i, zone in enumerate(zones):
                now = int((zone / "energy_uj").read_text())
                total[0] += ((now - last[i]) % (ranges[i] + 1)) / 1e6
                last[i] = now
            return total[0]

        self.source = "RAPL package energy (whole CPU package, all processes)"
        self._read = read


def nvml_index(device: Any) -> int:
    """NVML index of a CUDA device: NVML ignores CUDA_VISIBLE_DEVICES, JAX ids follow it."""
    ordinal = int(getattr(device, "local_hardware_id", None) or device.id)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    entries = [v.strip() for v in visible.split(",") if v.strip()]
    if entries and all(v.isdigit() for v in entries) and ordinal < len(entries):
        return int(entries[ordinal])
    return ordinal


__all__ = ["EnergySensor", "nvml_index"]

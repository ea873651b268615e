"""Hardware telemetry for the metric store: NVML when a GPU is present, else CPU and RAM."""

from __future__ import annotations

from functools import lru_cache

import psutil


@lru_cache(maxsize=1)
def _nvml_handle():
    """The first GPU's NVML handle, or None when there is no NVIDIA driver (CPU machines)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no driver, no library, no device: all mean "no GPU telemetry"
        return None


def snapshot() -> dict[str, float | None]:
    mem = psutil.virtual_memory()
    values: dict[str, float | None] = {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "ram_used_mb": (mem.total - mem.available) / 2**20,
        "ram_total_mb": mem.total / 2**20,
        "gpu_util": None, "vram_used_mb": None, "vram_total_mb": None, "gpu_temp_c": None,
    }
    handle = _nvml_handle()
    if handle is not None:
        import pynvml

        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        values.update(
            gpu_util=float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            vram_used_mb=info.used / 2**20,
            vram_total_mb=info.total / 2**20,
            gpu_temp_c=float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
        )
    return values

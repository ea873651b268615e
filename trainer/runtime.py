"""Device choice, seeding and determinism: the process-wide switches, set in one place."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random

import torch

from trainer.errors import TrainerError

log = logging.getLogger("trainer")


def resolve_device(requested: str) -> tuple[torch.device, str | None]:
    """`cuda` that is unavailable is an error; `auto` on a CPU-only machine warns (returned, and logged)."""
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise TrainerError(
                "training.device=cuda was requested but CUDA is not available "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                "use training.device=cpu to train on the CPU deliberately"
            )
        return torch.device("cuda"), None
    if requested == "cpu":
        return torch.device("cpu"), None
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), None
        warning = "device=auto found no CUDA device: TRAINING ON CPU (slow); set training.device=cpu to silence this"
        log.warning(warning)
        return torch.device("cpu"), warning
    raise TrainerError(f"training.device expects auto | cpu | cuda, got {requested!r}")


def seed_everything(seed: int, device: torch.device) -> None:
    """One seed drives Python's and torch's RNGs; deterministic kernels on."""
    random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def assert_on_device(model: torch.nn.Module, device: torch.device) -> None:
    """No silent CPU fallback: every parameter must live where training was asked to run."""
    wrong = {p.device.type for p in model.parameters()} - {device.type}
    if wrong:
        raise TrainerError(f"model parameters are on {sorted(wrong)} but training.device resolved to {device.type}")


_precision = "auto"  # training.precision of the run in progress (set by trainer.train.setup)
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bf16 arithmetic


def set_precision(precision: str) -> None:
    """`auto` (bf16 autocast on CUDA, fp32 on CPU), `fp32`, `bf16` (autocast on any device: the CPU stand-in for
    CUDA's path), or `bf16-where-native` (bf16 on CUDA and on CPUs with bf16 instructions, fp32 on other CPUs)."""
    global _precision
    _precision = precision


@contextlib.contextmanager
def precision(name: str):
    """`set_precision` for a block, restored after: how checks compute one forward in another precision."""
    before = _precision
    set_precision(name)
    try:
        yield
    finally:
        set_precision(before)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 among its flags). Without them
    bf16 is emulated and slower than fp32, so `bf16-where-native` keeps fp32 there."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def compute_dtype(device: torch.device) -> str:
    """What the training forward computes in under the current precision: "bf16" or "fp32" (metrics.json says which)."""
    if _precision == "bf16" or (_precision in ("auto", "bf16-where-native") and device.type == "cuda"):
        return "bf16"
    if _precision == "bf16-where-native" and device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast(device: torch.device):
    """bf16 autocast where the precision asks for it (see compute_dtype); a no-op context otherwise (fp32)."""
    if compute_dtype(device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def reset_peak_vram(device: torch.device) -> None:
    """Start a new peak for `peak_vram_mb` (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_vram_mb(device: torch.device) -> float | None:
    """VRAM as this project defines it, in the VRAM falsifier and the rubric alike: the peak bytes torch's CUDA caching
    allocator reserved in this process since `reset_peak_vram` (torch.cuda.max_memory_reserved), in MiB (2**20 bytes).

    Reserved, not allocated: what the process takes from the card, fragmentation included; the CUDA context and other
    processes are not counted (NVML's device-wide "used" counts both, so it is telemetry, not this measure). None off CUDA.
    """
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_reserved(device) / 2**20

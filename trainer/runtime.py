"""Device choice, seeding and determinism: the process-wide switches, set in one place."""

from __future__ import annotations

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


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU (fp32 there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)

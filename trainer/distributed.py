"""Data-parallel training under torchrun: torch.distributed + DistributedDataParallel, nothing home-made.

    torchrun --nproc_per_node 2 -m trainer train --config tiny-lora --output experiments/ddp

What a run means does not depend on the number of processes:

- `training.batch_size` is the *global* micro-batch. Every rank walks the same shuffled
  order and takes its contiguous share (batch_size / world_size examples) of each
  micro-batch, so 2 processes with batch_size 8 see exactly the examples that 1 process
  with batch_size 8 sees, step for step. A batch size the world size does not divide is
  an error.
- The loss is normalised by the label tokens of the whole accumulation window on all
  ranks (an all-reduce of the count), so 2 x 4 examples give the gradient of 1 x 8.
- Only rank 0 writes: the experiment directory, log, metric store, checkpoints and
  metrics.json. Other ranks keep their metrics in an in-memory store, read the base model
  rank 0 saved, and resume from rank 0's checkpoints (one machine, one file system).
- Backends: gloo on CPU, NCCL on CUDA (one GPU per rank, cuda:LOCAL_RANK).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainer.errors import TrainerError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """Rank and world size as torchrun sets them (a plain `python -m trainer` is rank 0 of 1)."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise TrainerError(f"torchrun environment: RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from None


def check_batch_size(batch_size: int, world_size: int) -> None:
    if batch_size % world_size:
        raise TrainerError(
            f"training.batch_size={batch_size} is not divisible by the torchrun world size {world_size} (WORLD_SIZE); "
            "batch_size is the global micro-batch, split evenly across processes"
        )


def setup(info: DistInfo, device: torch.device, batch_size: int) -> torch.device:
    """Join the process group (once per process); returns the device this rank trains on."""
    if not info.enabled:
        return device
    check_batch_size(batch_size, info.world_size)
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise TrainerError(f"torchrun LOCAL_RANK={info.local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible")
        torch.cuda.set_device(info.local_rank)
        device = torch.device("cuda", info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not info.is_main:
        logging.getLogger("trainer").setLevel(logging.ERROR)  # rank 0 speaks for the run
    return device


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """DDP around the (peft) model for the training forward; checkpoints and eval use `model` itself.

    Buffers (rotary tables) are identical on every rank and never trained, so they are
    not re-broadcast before each forward.
    """
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)


def reduce_sum(value: float | int, info: DistInfo | None) -> float | int:
    """Sum a Python number over ranks (float64 on the CPU; also a barrier)."""
    if info is None or not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64 if isinstance(value, float) else torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.item()


def gather_objects(obj, info: DistInfo | None) -> list:
    """Every rank's `obj`, in rank order (for state that differs per rank, e.g. RNG streams)."""
    if info is None or not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        reduce_sum(0, info)


def shutdown(info: DistInfo) -> None:
    """Leave together: a rank that destroys the group while another still finishes its writes can hang it."""
    if info.enabled and dist.is_initialized():
        barrier(info)
        dist.destroy_process_group()


# ------------------------------------------------------------------ falsifiers


def _loss_curve(experiment: Path) -> list[tuple[int, float]]:
    import sqlite3

    db = sqlite3.connect(f"file:{experiment / 'metrics.sqlite'}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in db.execute("SELECT step, loss FROM steps ORDER BY step")]
    finally:
        db.close()


def _run_train(config_file: Path, output: Path, nproc: int, extra: list[str] = (), timeout: float = 600) -> None:
    """`python -m trainer train` (nproc 1) or `torchrun --nproc_per_node N -m trainer train`; raises on failure."""
    import subprocess
    import sys

    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    cmd = [*launcher, "-m", "trainer", "train", "--config", str(config_file), "--output", str(output), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def _write_config(raw: dict, path: Path) -> Path:
    from trainer.config import load_config, save_config

    save_config(load_config(data=raw), path)
    return path


def ddp_equivalence(train: str, validation: str, workdir: str, batch_per_rank: int = 2, world_size: int = 2,
                    max_steps: int = 4, mode: str = "lora", rtol: float = 1e-4, defect: str | None = None) -> dict:
    """torchrun with `world_size` processes x `batch_per_rank` vs one process x the whole batch.

    Both runs use one config (batch_size = batch_per_rank x world_size, LoRA dropout 0 so
    that no random mask differs between the two layouts): same optimizer step count and
    the same loss curve within `rtol` (float summation order is the only difference).
    Planted defect "half_batch": the single process trains on batch_per_rank only.
    """
    from pathlib import Path

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    raw = {"name": "ddp-equivalence", "model": {"preset": "tiny"}, "lora": {"dropout": 0.0},
           "data": {"train": train, "validation": validation, "max_seq_len": 96, "max_validation_samples": 8},
           "training": {"mode": mode, "max_steps": max_steps, "batch_size": batch_per_rank * world_size, "learning_rate": 2e-3,
                        "save_steps": max_steps, "eval_steps": max_steps, "device": "cpu", "seed": 7}}
    ddp_cfg = _write_config(raw, work / "ddp.yaml")
    if defect == "half_batch":
        raw["training"]["batch_size"] = batch_per_rank
    elif defect is not None:
        raise ValueError(f"unknown defect {defect!r}")
    single_cfg = _write_config(raw, work / "single.yaml")
    _run_train(ddp_cfg, work / "ddp", world_size, ["--overwrite"])
    _run_train(single_cfg, work / "single", 1, ["--overwrite"])
    ddp, single = _loss_curve(work / "ddp"), _loss_curve(work / "single")
    rel = max((abs(a[1] - b[1]) / abs(b[1]) for a, b in zip(ddp, single)), default=float("inf"))
    same_steps = [s for s, _ in ddp] == [s for s, _ in single] and len(ddp) == max_steps
    return {"passed": same_steps and rel <= rtol, "max_relative_loss_difference": rel, "rtol": rtol,
            "steps_ddp": len(ddp), "steps_single": len(single), "loss_ddp": [l for _, l in ddp],
            "loss_single": [l for _, l in single], "world_size": world_size, "batch_per_rank": batch_per_rank, "defect": defect}


def ddp_resume(train: str, validation: str, workdir: str, world_size: int = 2, batch_per_rank: int = 2, max_steps: int = 4) -> dict:
    """Under torchrun, N steps straight equal N/2 steps + `--resume` to N: identical adapter bytes."""
    import shutil
    from pathlib import Path

    from trainer.checkpoint import ADAPTER, sha256_file

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    raw = {"name": "ddp-resume", "model": {"preset": "tiny"},
           "data": {"train": train, "validation": validation, "max_seq_len": 96, "max_validation_samples": 8},
           "training": {"mode": "lora", "max_steps": max_steps, "batch_size": batch_per_rank * world_size, "learning_rate": 2e-3,
                        "save_steps": max_steps // 2, "eval_steps": max_steps, "device": "cpu", "seed": 7}}
    cfg = _write_config(raw, work / "resume.yaml")
    _run_train(cfg, work / "straight", world_size, ["--overwrite"])
    # An interrupted run, without the waiting: a copy of the straight run cut back to its
    # step-N/2 checkpoint (what a kill after that save leaves), then resumed to N.
    resumed = work / "resumed"
    if resumed.exists():
        shutil.rmtree(resumed)
    shutil.copytree(work / "straight", resumed)
    for step_dir in (resumed / "checkpoints").glob("step-*"):
        if int(step_dir.name.split("-")[1]) > max_steps // 2:
            shutil.rmtree(step_dir)
    shutil.rmtree(resumed / "checkpoints" / "best", ignore_errors=True)
    _run_train(cfg, resumed, world_size, ["--resume"])
    a = sha256_file(work / "straight" / "checkpoints" / f"step-{max_steps}" / ADAPTER)
    b = sha256_file(resumed / "checkpoints" / f"step-{max_steps}" / ADAPTER)
    straight, again = _loss_curve(work / "straight"), _loss_curve(resumed)
    return {"passed": a == b and straight == again, "adapter_sha256_straight": a, "adapter_sha256_resumed": b,
            "loss_straight": [l for _, l in straight], "loss_resumed": [l for _, l in again], "world_size": world_size}

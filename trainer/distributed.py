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
- Only rank 0 writes: the experiment directory, its log, metric store, checkpoints and
  metrics. Other ranks keep their metrics in an in-memory store, read the base model
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


def setup(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group (once per process); returns the device this rank trains on.

    The batch size was checked against the world size (`check_batch_size`) before anything was written.
    """
    if not info.enabled:
        return device
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

"""Checkpoints: atomic writes, a sha256 manifest, rotation, the best copy, and exact-resume state.

A checkpoint directory is complete only once renamed from its temp name, and valid only
if every file matches its manifest hash. A SIGKILL at any moment therefore leaves either
the previous checkpoint or the new one, never half of one; a damaged file is refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.errors import TrainerError
from trainer.experiment import ExperimentPaths
from trainer.files import sha256_file

log = logging.getLogger("trainer")
MANIFEST = "manifest.json"
STATE = "trainer_state.pt"
ADAPTER = "adapter_model.safetensors"
FULL_WEIGHTS = "model.safetensors"


@dataclass
class TrainingState:
    """The loop's progress, and in a checkpoint everything an exact resume needs besides the weights.

    The counters are updated by the loop; `optimizer`, `scheduler`, `data_position` and
    `rng_per_rank` (one RNG state per DDP rank: each rank's dropout stream is its own)
    are captured when a checkpoint is written and put back on resume.
    """

    step: int = 0
    best_val_loss: float = math.inf
    best_step: int | None = None
    initial_val_loss: float | None = None
    tokens_seen: int = 0
    elapsed: float = 0.0
    optimizer: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    data_position: dict[str, int] = field(default_factory=dict)
    rng_per_rank: list[dict] = field(default_factory=list)

    def to_file(self) -> dict:
        """trainer_state.pt's content (`rng` is rank 0's stream, kept for single-process readers)."""
        return {"step": self.step, "optimizer": self.optimizer, "scheduler": self.scheduler, "rng": self.rng_per_rank[0],
                "rng_per_rank": self.rng_per_rank, "data_position": self.data_position, "best_val_loss": self.best_val_loss,
                "best_step": self.best_step, "initial_val_loss": self.initial_val_loss, "tokens_seen": self.tokens_seen,
                "elapsed": self.elapsed}

    @classmethod
    def from_file(cls, raw: dict) -> TrainingState:
        return cls(step=raw["step"], best_val_loss=raw["best_val_loss"], best_step=raw["best_step"],
                   initial_val_loss=raw["initial_val_loss"], tokens_seen=raw["tokens_seen"], elapsed=raw["elapsed"],
                   optimizer=raw["optimizer"], scheduler=raw["scheduler"], data_position=raw["data_position"],
                   rng_per_rank=raw.get("rng_per_rank", [raw["rng"]]))


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_manifest(directory: Path, step: int) -> None:
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps({"format": 1, "step": step, "files": files}, indent=1, sort_keys=True))


def _temp_of(directory: Path, tag: str = "tmp") -> Path:
    """Where `directory` is built (or parked) before a rename: a dot-name the listings skip."""
    return directory.with_name(f".{tag}-{directory.name}")


def save_checkpoint(paths: ExperimentPaths, model: torch.nn.Module, state: TrainingState) -> Path:
    """Write the checkpoint of `state.step` atomically: weights (peft adapter or full model), trainer state, manifest."""
    final = paths.checkpoint(state.step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{_temp_of(final).name}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    torch.save(state.to_file(), tmp / STATE)
    _write_manifest(tmp, state.step)
    _fsync_tree(tmp)
    if final.exists():  # re-saving the same step after a resume: replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def verify_checkpoint(directory: Path) -> dict:
    """Return the manifest if every file matches its hash; otherwise refuse, naming the problem."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise TrainerError(f"checkpoint {directory} is incomplete: no {MANIFEST}; refusing to load it")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise TrainerError(f"checkpoint {directory} is corrupt: unreadable {MANIFEST}; refusing to load it") from None
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise TrainerError(f"checkpoint {directory} is corrupt: {name} is missing; refusing to load it")
        if sha256_file(path) != expected:
            raise TrainerError(f"checkpoint {directory} is corrupt: {name} does not match its sha256; refusing to load it")
    return manifest


def clean_partial(paths: ExperimentPaths) -> list[str]:
    """Remove temp directories left by a kill mid-write; return their names for the log."""
    removed = []
    old_best = _temp_of(paths.best, "old")
    if old_best.is_dir() and not paths.best.exists():
        os.rename(old_best, paths.best)  # killed mid-swap: the old best is still good
    if paths.checkpoints.is_dir():
        for p in paths.checkpoints.iterdir():
            if p.name.startswith(".tmp-") or p == old_best:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def update_best(paths: ExperimentPaths, source: Path) -> Path:
    """Copy a checkpoint to the best checkpoint's place (temp copy, then swap by renames)."""
    best, tmp, old = paths.best, _temp_of(paths.best), _temp_of(paths.best, "old")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp)
    _fsync_tree(tmp)
    if best.exists():
        os.rename(best, old)
    os.rename(tmp, best)
    shutil.rmtree(old, ignore_errors=True)
    return best


def rotate(paths: ExperimentPaths, keep: int) -> None:
    """Keep the newest `keep` step checkpoints (best is a separate copy and is never rotated)."""
    for old in paths.step_checkpoints()[:-keep]:
        shutil.rmtree(old)


def load_state(directory: Path) -> TrainingState:
    verify_checkpoint(directory)
    return TrainingState.from_file(torch.load(directory / STATE, weights_only=True))


def load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Put a checkpoint's trained weights back into a freshly built model (adapter or full)."""
    from safetensors.torch import load_file

    verify_checkpoint(directory)
    if (directory / ADAPTER).is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(directory / ADAPTER))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise TrainerError(f"checkpoint {directory}: adapter tensors {unexpected[:5]} do not fit the model")
    elif (directory / FULL_WEIGHTS).is_file():
        missing, unexpected = model.load_state_dict(load_file(directory / FULL_WEIGHTS), strict=False)
        tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise TrainerError(f"checkpoint {directory}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    else:
        raise TrainerError(f"checkpoint {directory} holds no weights ({ADAPTER} or {FULL_WEIGHTS})")


def latest_valid(paths: ExperimentPaths) -> Path | None:
    """The newest complete checkpoint; a corrupt newest one is refused, not skipped silently."""
    checkpoints = paths.step_checkpoints()
    if not checkpoints:
        return None
    verify_checkpoint(checkpoints[-1])
    return checkpoints[-1]

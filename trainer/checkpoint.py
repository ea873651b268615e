"""Checkpoints: atomic writes, a sha256 manifest, rotation, `best/`, and exact-resume state.

A checkpoint directory is complete only once renamed from its temp name, and valid only
if every file matches its manifest hash. A SIGKILL at any moment therefore leaves either
the previous checkpoint or the new one, never half of one; a damaged file is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from trainer.errors import TrainerError

log = logging.getLogger("trainer")
MANIFEST = "manifest.json"
STATE = "trainer_state.pt"
ADAPTER = "adapter_model.safetensors"
FULL_WEIGHTS = "model.safetensors"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, state: dict) -> Path:
    """Write `root/step-N/` atomically: weights (peft adapter or full model), trainer state, manifest."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    torch.save(state, tmp / STATE)
    _write_manifest(tmp, step)
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


def list_checkpoints(root: Path) -> list[Path]:
    """Complete `step-N` directories, oldest first (temp directories are not checkpoints)."""
    if not root.is_dir():
        return []
    steps = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()]
    return sorted(steps, key=lambda p: int(p.name[5:]))


def clean_partial(root: Path) -> list[str]:
    """Remove temp directories left by a kill mid-write; return their names for the log."""
    removed = []
    if (root / ".old-best").is_dir() and not (root / "best").exists():
        os.rename(root / ".old-best", root / "best")  # killed mid-swap: the old best is still good
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-") or p.name == ".old-best":
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def update_best(root: Path, source: Path) -> Path:
    """Copy a checkpoint to `root/best/` (temp copy, then swap by renames)."""
    best, tmp, old = root / "best", root / ".tmp-best", root / ".old-best"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp)
    _fsync_tree(tmp)
    if best.exists():
        os.rename(best, old)
    os.rename(tmp, best)
    shutil.rmtree(old, ignore_errors=True)
    return best


def rotate(root: Path, keep: int) -> None:
    """Keep the newest `keep` step checkpoints (best/ is a separate copy and is never rotated)."""
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old)


def load_state(directory: Path) -> dict:
    verify_checkpoint(directory)
    return torch.load(directory / STATE, weights_only=True)


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


def latest_valid(root: Path) -> Path | None:
    """The newest complete checkpoint; a corrupt newest one is refused, not skipped silently."""
    checkpoints = list_checkpoints(root)
    if not checkpoints:
        return None
    verify_checkpoint(checkpoints[-1])
    return checkpoints[-1]

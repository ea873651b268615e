"""The experiment directory: its layout, the log, the lock file and metrics.json.

    experiments/<name>/
      config.yaml  reproducibility.lock  training.log  metrics.sqlite  metrics.json
      base_model/  (presets: the random-init weights + trained tokenizer)
      classifier_base/  (training.task=classify: the base's config as a classifier, links to its weights)
      checkpoints/step-N/  checkpoints/best/  evaluation/  evaluation-base/
      adapter-rejected.json  (only while the report's gates reject the adapter)
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

from trainer.config import Config, load_config, save_config
from trainer.errors import TrainerError
from trainer.files import sha256_file, write_atomic

log = logging.getLogger("trainer")


@dataclass(frozen=True)
class ExperimentPaths:
    """The only code that knows the experiment directory's layout: everyone else asks it for a path."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lock(self) -> Path:
        return self.root / "reproducibility.lock"

    @property
    def log(self) -> Path:
        return self.root / "training.log"

    @property
    def store(self) -> Path:
        return self.root / "metrics.sqlite"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        """The best checkpoint by validation loss (a directory like a step's)."""
        return self.checkpoints / "best"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step}"

    @staticmethod
    def step_of(checkpoint: Path) -> int | None:
        """The step of a `checkpoint(step)` directory; None for anything else (best/, temp directories)."""
        name = Path(checkpoint).name
        return int(name[5:]) if name.startswith("step-") and name[5:].isdigit() else None

    def step_checkpoints(self) -> list[Path]:
        """The step checkpoint directories, oldest first (best/ and temp directories are not among them)."""
        if not self.checkpoints.is_dir():
            return []
        steps = [p for p in self.checkpoints.iterdir() if p.is_dir() and self.step_of(p) is not None]
        return sorted(steps, key=self.step_of)

    @property
    def base_model(self) -> Path:
        return self.root / "base_model"

    @property
    def classifier_base(self) -> Path:
        """training.task=classify: the base as a sequence classifier (trainer.models.classifier_base); checkpoints' adapters name it."""
        return self.root / "classifier_base"

    @property
    def rejection(self) -> Path:
        """Written by the report when a P-GATE fails: why the adapter is rejected (trainer.rejection)."""
        return self.root / "adapter-rejected.json"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"


def resolve_config(paths: ExperimentPaths, given: Config | None, *, resume: bool) -> Config:
    """The config the run will use, decided once (every rank decides the same).

    A fresh run uses `given`. A resume uses the saved config: resuming with a different
    one would silently change the run, so a `given` config must match it key for key.
    """
    if not resume:
        if given is None:
            raise TrainerError("train needs a config (or --resume with an existing experiment directory)")
        return given
    if not paths.config.is_file():
        raise TrainerError(f"--resume: {paths.root} is not an experiment directory (no {paths.config.name})")
    saved = load_config(paths.config)
    diff = _diff(saved.to_dict(), given.to_dict()) if given is not None else []
    if diff:
        raise TrainerError(f"--resume: the config differs from {paths.config} in: {', '.join(diff)}")
    return saved


def prepare_directory(paths: ExperimentPaths, config: Config, *, resume: bool, overwrite: bool) -> None:
    """Create (or, with `overwrite`, replace) the directory and save the config; a resume keeps it as it is."""
    if resume:
        return
    if paths.config.is_file() and not overwrite:
        raise TrainerError(f"{paths.root} already holds an experiment; pass --resume to continue it or --overwrite to replace it")
    if overwrite and paths.root.exists():
        shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    save_config(config, paths.config)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        dotted = f"{prefix}{k}"
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], dotted + ".")
        elif a.get(k) != b.get(k):
            out.append(f"{dotted} ({a.get(k)!r} -> {b.get(k)!r})")
    return out


def setup_logging(path: Path) -> None:
    """The experiment's log file gets everything; the console gets the same lines."""
    logger = logging.getLogger("trainer")
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        if getattr(handler, "_trainer_handler", False):
            logger.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    for handler in (logging.FileHandler(path, encoding="utf-8"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        handler._trainer_handler = True
        logger.addHandler(handler)
    logger.propagate = False
    quiet_libraries()


def quiet_libraries() -> None:
    """Library chatter (progress bars, an optional-kernel notice from bitsandbytes) hides the real log."""
    import warnings

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # before its import prints the notice
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def sha256_of(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def sha256_of_dir(path: Path, pattern: str = "*.safetensors") -> str | None:
    """One hash over a directory's weight files (name + content, sorted)."""
    files = sorted(path.glob(pattern)) if path.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(bytes.fromhex(sha256_of(file)))
    return digest.hexdigest()


def environment_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("torch", "transformers", "peft", "bitsandbytes", "tokenizers", "safetensors", "tree-sitter", "tree-sitter-rust"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        versions["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        versions["rustc"] = None
    return versions


def write_lock(paths: ExperimentPaths, config: Config, device: str, final_adapter: Path | None) -> dict:
    lock = {
        "versions": environment_versions(),
        "device": device,
        "seed": config.training.seed,
        "config_sha256": sha256_of(paths.config),
        "datasets": {p: sha256_of(Path(p)) for p in (config.data.train, config.data.validation)},
        "base_model_sha256": sha256_of_dir(paths.base_model) or (sha256_of_dir(Path(config.model.path)) if config.model.path else None),
        "final_adapter_sha256": sha256_of_dir(final_adapter) if final_adapter else None,
        "final_checkpoint": str(final_adapter) if final_adapter else None,
    }
    write_atomic(paths.lock, yaml.safe_dump(lock, sort_keys=True))
    return lock

"""Reads the rubric's evidence from disk: evaluator summary, falsifier results, experiment runs.

Kept apart from `falsify.report.rubric` so scoring stays a pure function of plain data
(`Evidence`). Every malformed file raises `ReportError` with one line naming the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from falsify.evaluate.summary import SUMMARY_FIELDS
from trainer.experiment import ExperimentPaths, sha256_of_dir
from trainer.files import JsonlError, read_jsonl
from trainer.monitor.store import StoreError, read_curves


class ReportError(Exception):
    """A user-facing problem with the report's inputs (exit 2, one line, no traceback)."""


@dataclass
class Evidence:
    """What the scorer may read. A source that is None has its reason in `missing`."""

    summary: dict | None = None          # evaluator summary.json
    experiment: dict | None = None       # run A: `load_run` (metrics, loss/eval curves, lock, adapter sha256, vram)
    repeat: dict | None = None           # run B (same seed), same shape
    generation: dict | None = None       # <samples>.summary.json of the generation stage
    falsifiers: list[dict] | None = None  # items of the plugin's --falsify-results JSON
    missing: dict[str, str] = field(default_factory=dict)

    def why_missing(self, source: str) -> str:
        return self.missing.get(source, f"no {source} evidence was gathered")


def read_json(path: Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: {what} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data


def load_summary(path: Path) -> dict:
    """The evaluator's summary.json; every field of SUMMARY_FIELDS must be present."""
    data = read_json(path, "evaluator summary")
    for key in SUMMARY_FIELDS:
        if key not in data:
            raise ReportError(f"{path}: field '{key}' is missing (an evaluator summary needs: {', '.join(SUMMARY_FIELDS)})")
    for key in ("category_counts", "category_pass_counts"):
        if data[key] is not None and not isinstance(data[key], dict):
            raise ReportError(f"{path}: field '{key}' must be an object mapping category -> count")
    if not isinstance(data["n"], int):
        raise ReportError(f"{path}: field 'n' must be an integer, got {data['n']!r}")
    return data


def load_falsifiers(path: Path) -> list[dict]:
    """The items of the contracts plugin's --falsify-results file (version 1)."""
    data = read_json(path, "falsifier results")
    if data.get("version") != 1:
        raise ReportError(f"{path}: field 'version' is {data.get('version')!r}, expected 1")
    items = data.get("items")
    if not isinstance(items, list):
        raise ReportError(f"{path}: field 'items' must be a list")
    for i, item in enumerate(items):
        for key in ("nodeid", "outcome"):
            if not isinstance(item, dict) or key not in item:
                raise ReportError(f"{path}: items[{i}] has no field '{key}'")
    return items


def experiment_paths(root: Path) -> ExperimentPaths:
    """The layout of an existing experiment directory; ReportError when `root` is not one."""
    paths = ExperimentPaths(Path(root))
    if not paths.root.is_dir():
        raise ReportError(f"{paths.root}: experiment directory not found")
    if not paths.config.is_file():
        raise ReportError(f"{paths.root}: not an experiment directory (no {paths.config.name})")
    return paths


def _read_lock(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        lock = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ReportError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(lock, dict):
        raise ReportError(f"{path}: expected a YAML mapping")
    return lock


def load_run(root: Path) -> dict:
    """One finished training run: metrics, curves, lock, adapter hashes."""
    paths = experiment_paths(root)
    metrics = read_json(paths.metrics, "experiment metrics")
    for key in ("status", "device", "train_seconds", "final_val_loss"):
        if key not in metrics:
            raise ReportError(f"{paths.metrics}: field '{key}' is missing")
    if not paths.store.is_file():
        raise ReportError(f"{paths.store}: metric store not found")
    try:
        curves = read_curves(paths.store)
    except StoreError as exc:
        raise ReportError(f"{paths.store}: unreadable metric store ({str(exc).removeprefix(f'{paths.store}: ')})") from None
    final = metrics.get("final_checkpoint")
    final_dir = paths.checkpoints / Path(final).name if final else None
    return {"root": str(paths.root), "metrics": metrics, "loss_curve": curves.loss, "eval_curve": curves.evals,
            "peak_vram_mb": curves.peak_vram_mb, "lock": _read_lock(paths.lock),
            "adapter_sha256": sha256_of_dir(paths.best),
            "final_adapter_sha256": sha256_of_dir(final_dir) if final_dir else None}


def load_samples(path: Path, limit: int | None = None) -> list[dict]:
    """Per-sample verdicts (evaluator samples.jsonl), [] when there is none; a bad line names its number."""
    if not Path(path).is_file():
        return []
    try:
        return read_jsonl(path, limit)
    except JsonlError as exc:
        raise ReportError(str(exc)) from None

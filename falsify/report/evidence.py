"""Reads the rubric's evidence from disk: evaluator summary, falsifier results, experiment runs.

Kept apart from `falsify.report.rubric` so scoring stays a pure function of plain data. Every
malformed file raises `ReportError` with one line naming the file and the field.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import yaml

from falsify.report.rubric import SUMMARY_FIELDS


class ReportError(Exception):
    """A user-facing problem with the report's inputs (exit 2, one line, no traceback)."""


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


def _curves(db_path: Path) -> tuple[list, list, float | None]:
    """(loss curve, eval curve, peak VRAM MiB) from the metric store, opened read-only."""
    if not db_path.is_file():
        raise ReportError(f"{db_path}: metric store not found")
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            steps = [tuple(r) for r in db.execute("SELECT step, loss FROM steps ORDER BY step")]
            evals = [tuple(r) for r in db.execute("SELECT step, val_loss FROM evals ORDER BY step")]
            peak = db.execute("SELECT MAX(vram_used_mb) FROM hardware").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ReportError(f"{db_path}: unreadable metric store ({exc})") from None
    return steps, evals, peak


def load_run(root: Path) -> dict:
    """One finished training run: metrics, curves, lock, adapter hashes."""
    from trainer.experiment import sha256_of_dir

    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root}: experiment directory not found")
    if not (root / "config.yaml").is_file():
        raise ReportError(f"{root}: not an experiment directory (no config.yaml)")
    metrics = read_json(root / "metrics.json", "experiment metrics")
    for key in ("status", "device", "train_seconds", "final_val_loss"):
        if key not in metrics:
            raise ReportError(f"{root / 'metrics.json'}: field '{key}' is missing")
    loss_curve, eval_curve, peak = _curves(root / "metrics.sqlite")
    lock = None
    lock_path = root / "reproducibility.lock"
    if lock_path.is_file():
        try:
            lock = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ReportError(f"{lock_path}: invalid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(lock, dict):
            raise ReportError(f"{lock_path}: expected a YAML mapping")
    final = metrics.get("final_checkpoint")
    final_dir = root / "checkpoints" / Path(final).name if final else None
    return {"root": str(root), "metrics": metrics, "loss_curve": loss_curve, "eval_curve": eval_curve,
            "peak_vram_mb": peak, "lock": lock,
            "adapter_sha256": sha256_of_dir(root / "checkpoints" / "best"),
            "final_adapter_sha256": sha256_of_dir(final_dir) if final_dir else None}


def load_samples(path: Path, limit: int | None = None) -> list[dict]:
    """Per-sample verdicts (evaluator samples.jsonl); a bad line names its number."""
    rows = []
    if not Path(path).is_file():
        return rows
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
        if limit is not None and len(rows) >= limit:
            break
    return rows

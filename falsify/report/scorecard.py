"""scorecard.json: its schema, and the code that assembles the card and writes the scorecard files.

The TypedDicts below are the one definition of the JSON the report writes (its field names
are a contract: README documents them, `--baseline` reads them back). The rubric fills the
scored part (`RubricScore`), `build_scorecard` adds provenance, stages and curves, and the
Markdown and HTML renderers read a `Scorecard`. (No `from __future__ import annotations` here:
TypedDict must see `NotRequired` evaluated to leave `baseline` out of the required keys.)
"""

import json
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from falsify.report.comparison import Comparison
from falsify.report.evidence import Evidence, load_samples
from trainer.files import write_atomic

if TYPE_CHECKING:  # annotations only: the pipeline module is not needed to read or write a card
    from falsify.report.pipeline import Plan, StageResult

Curve = list[list[float]]  # [[step, loss], ...]


class FalsifierBehind(TypedDict):
    """A falsifier whose contract names this item (`rubric: [item]`); a failed one overrules the item."""

    nodeid: str | None
    falsifier: str | None
    tier: str | None
    outcome: str | None
    status: str  # "passed" | "failed" | "not run"
    reason: str


class ScoredItem(TypedDict):
    id: str
    category: str
    title: str
    points: int  # `max` when passed, else 0 (all-or-nothing)
    max: int
    threshold: str
    source: str
    status: str  # "passed" | "failed" | "not run"
    evidence: dict[str, Any]
    falsifiers: list[FalsifierBehind]
    reason: str


class Gate(TypedDict):
    id: str  # P-GATE-00N
    requirement: str
    threshold: float
    status: str          # "passed" | "failed" | "not run"
    passed: bool | None  # None: not run (no evidence), which neither accepts nor rejects
    value: float | None
    reason: str


class CategoryScore(TypedDict):
    points: int
    max: int


Counts = TypedDict("Counts", {"passed": int, "failed": int, "not run": int})


class RubricScore(TypedDict):
    """What `falsify.report.rubric.score` returns: the scored part of the card."""

    rubric_version: str
    total: int
    max_total: int
    grade: str
    counts: Counts
    categories: dict[str, CategoryScore]
    gates: list[Gate]
    items: list[ScoredItem]


class StageRecord(TypedDict):
    name: str
    status: str  # "ran" | "reused" | "failed" | "skipped"
    seconds: float
    command: str
    reason: str
    log: str | None


class ItemDelta(TypedDict):
    id: str
    after: int
    status_after: str
    before: int | None  # None: the item is new since the baseline
    status_before: str | None
    delta: int | None


class BaselineDiff(TypedDict):
    """`--baseline`: this card against an earlier one (written by `falsify.report.baseline.compare`)."""

    path: str
    total_before: int
    total_after: int
    total_delta: int
    items: list[ItemDelta]
    regressed_items: list[str]
    improved_items: list[str]
    newly_failing_gates: list[str]
    regression: bool
    removed_items: list[str]


class Scorecard(RubricScore):
    generator: str  # "model" | "reference"
    generated_at: str
    provenance: dict[str, Any]
    stages: list[StageRecord]
    missing_evidence: dict[str, str]
    curves: dict[str, Curve]  # "train loss (run A)", "validation loss (repeat)", ...
    comparison: Comparison | None  # base vs tuned on the same holdout (None: not compared; missing_evidence says why)
    rerank_comparison: Comparison | None  # first candidate vs critic-reranked (None: no --critic, or missing_evidence says why)
    adapter: str  # "accepted" | "rejected" (a gate failed) | "not judged" (no adapter, or a stage failed)
    baseline: NotRequired[BaselineDiff]


# ---------------------------------------------------------------- assembling the card

def _git() -> dict:
    def run(*args):
        try:
            r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def traceability(samples: Path, generation: dict | None) -> dict | None:
    """Does every generated test name the weights that wrote it (model + adapter sha256, settings)?"""
    if generation is None or not samples.is_file():
        return None
    rows = load_samples(samples)
    gens = [(r.get("metadata") or {}).get("generation") or {} for r in rows]
    traced = [g for g in gens if g.get("model_sha256") and g.get("adapter_sha256") and "max_new_tokens" in g]
    return {"records": len(rows), "with_model_adapter_and_settings": len(traced),
            "adapter_sha256s": sorted({g["adapter_sha256"] for g in traced}),
            "match_generation_summary": all(g["adapter_sha256"] == generation.get("adapter_sha256") for g in traced)}


def provenance(plan: "Plan", ev: Evidence) -> dict:
    from trainer.experiment import environment_versions, sha256_of

    lock = (ev.experiment or {}).get("lock") or {}
    gen = ev.generation or {}
    datasets = dict(lock.get("datasets") or {})
    for path in (plan.holdout, plan.samples):
        datasets[str(path)] = sha256_of(Path(path))
    return {
        "generator": plan.generator,
        "experiment": str(plan.experiment) if plan.experiment else None,
        "repeat": str(plan.repeat) if plan.repeat else None,
        "evaluation": str(plan.eval_dir),
        "base_model_sha256": lock.get("base_model_sha256"),
        "generation_model_sha256": gen.get("model_sha256"),
        "adapter_sha256": gen.get("adapter_sha256"),
        "best_adapter_sha256": (ev.experiment or {}).get("adapter_sha256"),
        "generation_checkpoint": gen.get("checkpoint"),
        "generation_settings": gen.get("generation"),
        "traceability": traceability(plan.samples, ev.generation),
        "datasets": datasets,
        "versions": environment_versions(),
        "training_versions": lock.get("versions"),
        "git": _git(),
    }


def _stage_record(stage: "StageResult") -> StageRecord:
    return {"name": stage.name, "status": stage.status, "seconds": round(stage.seconds, 2), "command": stage.command,
            "reason": stage.reason, "log": stage.log}


def adapter_verdict(scored: RubricScore, plan: "Plan", stages: "list[StageResult]") -> str:
    """SPEC: a failing P-GATE rejects the adapter. Only a model run has an adapter; a failed stage leaves it unjudged."""
    if plan.generator != "model" or any(s.status == "failed" for s in stages):
        return "not judged"
    return "rejected" if any(g["passed"] is False for g in scored["gates"]) else "accepted"


def build_scorecard(scored: RubricScore, plan: "Plan", ev: Evidence, stages: "list[StageResult]",
                    comparison: Comparison | None = None, rerank_comparison: Comparison | None = None) -> Scorecard:
    """The rubric's score plus what the reader needs to trust it: provenance, stages, missing evidence, curves."""
    curves: dict[str, Curve] = {}
    for label, run in (("run A", ev.experiment), ("repeat", ev.repeat)):
        if run:
            curves[f"train loss ({label})"] = [list(p) for p in run["loss_curve"]]
            curves[f"validation loss ({label})"] = [list(p) for p in run["eval_curve"]]
    return Scorecard(**scored, generator=plan.generator, generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
                     provenance=provenance(plan, ev), stages=[_stage_record(s) for s in stages],
                     missing_evidence=dict(ev.missing), curves=curves, comparison=comparison,
                     rerank_comparison=rerank_comparison, adapter=adapter_verdict(scored, plan, stages))


# ---------------------------------------------------------------- reading and writing the files

def scorecard_json(card: Scorecard) -> str:
    return json.dumps(card, indent=2, default=str) + "\n"


def item_deltas(card: Scorecard) -> dict[str, int | None]:
    """Item id -> points delta against the baseline ({} without one)."""
    diff = card.get("baseline")
    return {r["id"]: r["delta"] for r in diff["items"]} if diff else {}


def write_scorecard(out: Path, files: dict[str, str]) -> list[Path]:
    """All files or none: each is written into a hidden staging directory first, then renamed over the old one.

    A failure while writing (a full disk) leaves the previous scorecard as it was and no staged files.
    """
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".scorecard.", suffix=".tmp"))
    try:
        staged = [(write_atomic(staging / name, text), out / name) for name, text in files.items()]
        for tmp, dest in staged:
            tmp.replace(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest for _, dest in staged]

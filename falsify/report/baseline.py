"""Regression of knowledge: compare a scorecard with an earlier one (`--baseline old.json`).

A lower total, or a gate that fails now and did not before, is a regression; the diff
names the items whose points dropped so the exit message can say what got worse.
"""

from __future__ import annotations

from pathlib import Path

from falsify.report.evidence import ReportError, read_json
from falsify.report.scorecard import BaselineDiff, ItemDelta, Scorecard


def _major(version) -> str:
    return str(version).split(".")[0]


def load_baseline(path: Path, rubric_version: str) -> Scorecard:
    card = read_json(Path(path), "baseline scorecard")
    for key in ("rubric_version", "total", "items", "gates"):
        if key not in card:
            raise ReportError(f"{path}: field '{key}' is missing (not a scorecard.json?)")
    if _major(card["rubric_version"]) != _major(rubric_version):
        raise ReportError(f"{path}: field 'rubric_version' is {card['rubric_version']!r}, incompatible with this "
                          f"report's rubric {rubric_version!r} (major versions differ)")
    return card


def compare(current: Scorecard, baseline: Scorecard, path: str) -> BaselineDiff:
    """Per-item and total deltas; `regression` is True for a lower total or a newly failing gate."""
    before = {i["id"]: i for i in baseline["items"]}
    items: list[ItemDelta] = []
    regressed: list[str] = []
    for item in current["items"]:
        old = before.get(item["id"])
        row = ItemDelta(id=item["id"], after=item["points"], status_after=item["status"],
                        before=old["points"] if old else None, status_before=old["status"] if old else None,
                        delta=item["points"] - old["points"] if old else None)
        items.append(row)
        if old and row["delta"] < 0:
            regressed.append(item["id"])
    old_gates = {g["id"]: g["status"] for g in baseline["gates"]}
    newly_failing = [g["id"] for g in current["gates"] if g["status"] == "failed" and old_gates.get(g["id"]) != "failed"]
    total_delta = current["total"] - baseline["total"]
    return BaselineDiff(path=str(path), total_before=baseline["total"], total_after=current["total"], total_delta=total_delta,
                        items=items, regressed_items=regressed, improved_items=[r["id"] for r in items if (r["delta"] or 0) > 0],
                        newly_failing_gates=newly_failing, regression=total_delta < 0 or bool(newly_failing),
                        removed_items=sorted(set(before) - {i["id"] for i in current["items"]}))


def regression_message(diff: BaselineDiff) -> str:
    parts = [f"regression against {diff['path']}: total {diff['total_before']} -> {diff['total_after']} ({diff['total_delta']:+d})"]
    rows = {r["id"]: r for r in diff["items"]}
    if diff["regressed_items"]:
        parts.append("items regressed: " + ", ".join(
            f"{i} ({rows[i]['before']} -> {rows[i]['after']}, {rows[i]['status_after']})" for i in diff["regressed_items"]))
    if diff["newly_failing_gates"]:
        parts.append("gates newly failing: " + ", ".join(diff["newly_failing_gates"]))
    return "; ".join(parts)

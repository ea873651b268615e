"""The 100-point Popperian rubric: 26 items in 7 categories, grades and the P-GATE gates.

Scoring is pure: `score(Evidence) -> RubricScore` (the scored part of scorecard.json) reads only the evidence it is given (files are
read by `falsify.report.evidence`). Every item is all-or-nothing: it earns its full points when
its measured value meets the stated threshold and no falsifier behind it failed; it scores
0 when the value misses ("failed") or when its evidence was not gathered ("not run", with
the reason). No item is ever scored from a constant: a missing value is "not run".

Rates come from the evaluator's summary.json (fractions in [0, 1]). Thresholds for rates
are the seeds' targets where they state one (compile 0.90, pass 0.85, mutation 0.70) and
documented choices otherwise (see each item's `threshold`).
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from falsify.report.evidence import Evidence
from falsify.report.scorecard import CategoryScore, Counts, FalsifierBehind, Gate, RubricScore, ScoredItem

RUBRIC_VERSION = "2.0"  # 2.0: the coverage items score the gain over the crate's own tests, not plain coverage

CATEGORIES = OrderedDict([
    ("Reproducibility", 20), ("Compilation", 20), ("Correctness", 20), ("Coverage", 15),
    ("Efficiency", 10), ("Edge cases", 10), ("Documentation", 5),
])

VRAM_LIMIT_MB = 8 * 1024  # "8 GB" read as 8 GiB, as nvidia-smi reports memory
TRAINING_LIMIT_S = 4 * 3600
GENERATION_LIMIT_S = 1.0
CATEGORY_PASS_TARGET = 0.85  # edge-case items: same bar as the overall pass rate


@dataclass
class ItemResult:
    """What one item's judge found: its status, the measured values behind it, and why."""

    status: str  # "passed" | "failed" | "not run"
    evidence: dict
    reason: str


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    points: int
    title: str
    threshold: str
    source: str
    judge: Callable[[Evidence], ItemResult] = field(repr=False, compare=False)


def not_run(reason: str, **evidence) -> ItemResult:
    return ItemResult("not run", evidence, reason)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- judges: evaluator rates

def _summary_value(ev: Evidence, key: str):
    """(value, None) or (None, not-run result) when the summary is absent or empty."""
    if ev.summary is None:
        return None, not_run(ev.why_missing("summary"))
    if not ev.summary.get("n"):
        return None, not_run("the evaluator evaluated 0 samples", n=ev.summary.get("n"))
    value = ev.summary[key]
    if value is None:
        return None, not_run(f"the evaluator reported no {key} (no applicable samples)", n=ev.summary["n"])
    return value, None


def rate(key: str, op: str, target: float) -> Callable[[Evidence], ItemResult]:
    """Judge: summary[key] compared with target (op is '>=' or '<=')."""
    compare = {">=": operator.ge, "<=": operator.le}[op]

    def judge(ev: Evidence) -> ItemResult:
        value, skipped = _summary_value(ev, key)
        if skipped:
            return skipped
        ok = compare(value, target)
        return ItemResult("passed" if ok else "failed", {key: value, "n": ev.summary["n"]},
                       f"{key} = {_fmt(value)}, needs {op} {target}")
    return judge


def category(cat: str) -> Callable[[Evidence], ItemResult]:
    """Edge-case item: share of the category's samples that compile and pass."""
    def judge(ev: Evidence) -> ItemResult:
        counts, skipped = _summary_value(ev, "category_counts")
        if skipped:
            return skipped
        total = int(counts.get(cat, 0) or 0)
        passed = int((ev.summary["category_pass_counts"] or {}).get(cat, 0) or 0)
        if total == 0:
            return not_run(f"no evaluated sample is in category {cat}", samples=0)
        share = passed / total
        ok = share >= CATEGORY_PASS_TARGET
        return ItemResult("passed" if ok else "failed", {"samples": total, "passing": passed, "pass_share": share},
                       f"{passed}/{total} {cat} samples compile and pass ({share:.3f}), needs >= {CATEGORY_PASS_TARGET}")
    return judge


def meaningful_assertions(ev: Evidence) -> ItemResult:
    """Tests assert something (few samples without any) and what they assert is the function's result."""
    none_rate, skipped = _summary_value(ev, "no_assertion_rate")
    if skipped:
        return skipped
    uses = ev.summary["function_result_assertion_rate"]  # None when no sample asserted anything
    evidence = {"no_assertion_rate": none_rate, "function_result_assertion_rate": uses, "n": ev.summary["n"]}
    reason = (f"no_assertion_rate = {_fmt(none_rate)} (needs <= 0.05), function_result_assertion_rate = "
              f"{_fmt(uses)} (needs >= 0.80)")
    ok = none_rate <= 0.05 and uses is not None and uses >= 0.80
    return ItemResult("passed" if ok else "failed", evidence, reason)


# ---------------------------------------------------------------- judges: the two training runs

def _both_runs(ev: Evidence) -> ItemResult | None:
    if ev.experiment is None:
        return not_run(ev.why_missing("experiment"))
    if ev.repeat is None:
        return not_run(ev.why_missing("repeat"))
    return None


def _curve_result(a: list, b: list, name: str) -> ItemResult:
    if not a or not b:
        return not_run(f"a run recorded no {name} (steps A={len(a)}, B={len(b)})")
    diffs = [abs(x[1] - y[1]) for x, y in zip(a, b) if x[0] == y[0]]
    same_steps = [x[0] for x in a] == [y[0] for y in b]
    max_diff = max(diffs) if diffs else None
    ok = same_steps and max_diff == 0.0
    evidence = {"points_a": len(a), "points_b": len(b), "same_steps": same_steps, "max_abs_diff": max_diff}
    reason = (f"{name}s identical over {len(a)} points" if ok else
              f"{name}s differ: same steps {same_steps}, max |diff| {max_diff}")
    return ItemResult("passed" if ok else "failed", evidence, reason + " (needs bit-identical)")


def same_loss_curve(ev: Evidence) -> ItemResult:
    return _both_runs(ev) or _curve_result(ev.experiment["loss_curve"], ev.repeat["loss_curve"], "training loss curve")


def same_final_weights(ev: Evidence) -> ItemResult:
    skipped = _both_runs(ev)
    if skipped:
        return skipped
    a, b = ev.experiment.get("adapter_sha256"), ev.repeat.get("adapter_sha256")
    if a is None or b is None:
        return not_run(f"a run has no best adapter (sha256 A={a}, B={b})")
    ok = a == b
    return ItemResult("passed" if ok else "failed", {"adapter_sha256_a": a, "adapter_sha256_b": b},
                   "adapter bytes identical" if ok else "adapter bytes differ between the same-seed runs")


def same_eval_metrics(ev: Evidence) -> ItemResult:
    skipped = _both_runs(ev)
    if skipped:
        return skipped
    result = _curve_result(ev.experiment["eval_curve"], ev.repeat["eval_curve"], "validation loss curve")
    fa, fb = ev.experiment["metrics"].get("final_val_loss"), ev.repeat["metrics"].get("final_val_loss")
    result.evidence.update(final_val_loss_a=fa, final_val_loss_b=fb)
    if result.status == "passed" and fa != fb:
        return ItemResult("failed", result.evidence, f"final validation loss differs: {fa} vs {fb}")
    return result


LOCK_VERSIONS = ("python", "torch", "transformers", "peft", "bitsandbytes", "rustc")


def environment_locked(ev: Evidence) -> ItemResult:
    """The lock names every version, the device, the seed and sha256s, and its adapter hash is true."""
    if ev.experiment is None:
        return not_run(ev.why_missing("experiment"))
    lock = ev.experiment.get("lock")
    if lock is None:
        return ItemResult("failed", {}, "reproducibility.lock is missing")
    versions = lock.get("versions") or {}
    gaps = [f"versions.{k}" for k in LOCK_VERSIONS if not versions.get(k)]
    gaps += [k for k in ("device", "seed", "config_sha256", "final_adapter_sha256") if lock.get(k) in (None, "")]
    datasets = lock.get("datasets") or {}
    if not datasets or any(v is None for v in datasets.values()):
        gaps.append("datasets (sha256 of each file)")
    recorded, actual = lock.get("final_adapter_sha256"), ev.experiment.get("final_adapter_sha256")
    evidence = {"missing_fields": gaps, "lock_adapter_sha256": recorded, "final_adapter_sha256_on_disk": actual}
    if gaps:
        return ItemResult("failed", evidence, f"reproducibility.lock lacks: {', '.join(gaps)}")
    if recorded != actual:
        return ItemResult("failed", evidence, "the lock's final_adapter_sha256 does not match the checkpoint on disk")
    return ItemResult("passed", evidence, "lock names versions, device, seed and sha256s; adapter hash matches the disk")


# ---------------------------------------------------------------- judges: efficiency

def peak_vram(ev: Evidence) -> ItemResult:
    if ev.experiment is None:
        return not_run(ev.why_missing("experiment"))
    device = str(ev.experiment["metrics"].get("device", ""))
    if not device.startswith("cuda"):
        return not_run(f"training ran on {device or 'an unknown device'}; peak VRAM needs CUDA", device=device)
    peak, source = vram_reading(ev.experiment)
    if peak is None:
        return not_run("the run recorded no peak VRAM", device=device)
    ok = peak < VRAM_LIMIT_MB
    return ItemResult("passed" if ok else "failed", {"peak_vram_mb": peak, "device": device, "source": source},
                   f"peak VRAM {peak:.0f} MiB ({source}), needs < {VRAM_LIMIT_MB} MiB")


def vram_reading(experiment: dict) -> tuple[float | None, str]:
    """VRAM as the project defines it (trainer.runtime.peak_vram_mb, also FALSIFY-GPU-003's measure): the peak bytes torch's CUDA
    allocator reserved in the training process, which the trainer writes to metrics.json as `peak_vram_mb`.

    A run from before the trainer recorded it has only the hardware table's NVML readings (device-wide, CUDA context
    and other processes included, sampled every 2 s); the item then says that it read those instead.
    """
    metrics = experiment.get("metrics") or {}
    if "peak_vram_mb" in metrics:
        return metrics["peak_vram_mb"], "metrics.json peak_vram_mb: torch.cuda.max_memory_reserved"
    return experiment.get("peak_vram_mb"), "NVML samples of a run that predates metrics.json peak_vram_mb"


def training_time(ev: Evidence) -> ItemResult:
    if ev.experiment is None:
        return not_run(ev.why_missing("experiment"))
    m = ev.experiment["metrics"]
    seconds, status = m.get("train_seconds"), m.get("status")
    if seconds is None:
        return not_run("metrics.json has no train_seconds")
    ok = status == "finished" and seconds < TRAINING_LIMIT_S
    return ItemResult("passed" if ok else "failed", {"train_seconds": seconds, "status": status},
                   f"training {status} in {seconds:.0f} s, needs to finish in < {TRAINING_LIMIT_S} s")


def generation_time(ev: Evidence) -> ItemResult:
    if ev.generation is None:
        return not_run(ev.why_missing("generation"))
    median = ev.generation.get("median_seconds_per_function")
    if median is None:
        return not_run("the generation summary has no median_seconds_per_function (0 functions?)")
    ok = median < GENERATION_LIMIT_S
    return ItemResult("passed" if ok else "failed",
                   {"median_seconds_per_function": median, "functions": ev.generation.get("functions"),
                    "tokens_per_s": ev.generation.get("tokens_per_s")},
                   f"median {median:.3f} s per function, needs < {GENERATION_LIMIT_S} s")


# ---------------------------------------------------------------- the items

def _items() -> OrderedDict[str, Item]:
    S = "evaluator summary.json"
    rows = [
        ("r1_same_loss_curve", "Reproducibility", 5, "same training loss curve",
         "two same-seed runs log bit-identical training losses at every step",
         "metrics.sqlite steps table of both runs", same_loss_curve),
        ("r2_same_final_weights", "Reproducibility", 5, "same final weights",
         "sha256 of checkpoints/best/*.safetensors identical across the two runs",
         "checkpoints/best of both runs", same_final_weights),
        ("r3_same_eval_metrics", "Reproducibility", 5, "same eval metrics",
         "bit-identical validation loss curve and final validation loss across the two runs",
         "metrics.sqlite evals table + metrics.json of both runs", same_eval_metrics),
        ("r4_environment_locked", "Reproducibility", 5, "environment locked",
         "reproducibility.lock has python/torch/transformers/peft/bitsandbytes/rustc versions, device, seed, "
         "config+dataset+adapter sha256, and the adapter hash matches the disk",
         "reproducibility.lock", environment_locked),
        ("c1_parses", "Compilation", 5, "parses", "parse_rate >= 0.95", f"{S}: parse_rate", rate("parse_rate", ">=", 0.95)),
        ("c2_type_checks", "Compilation", 5, "type-checks", "compile_rate >= 0.90", f"{S}: compile_rate",
         rate("compile_rate", ">=", 0.90)),
        ("c3_no_clippy_warnings", "Compilation", 5, "no clippy warnings", "clippy_clean_rate >= 0.80",
         f"{S}: clippy_clean_rate", rate("clippy_clean_rate", ">=", 0.80)),
        ("c4_links", "Compilation", 5, "links against the target", "link_rate >= 0.90", f"{S}: link_rate",
         rate("link_rate", ">=", 0.90)),
        ("x1_pass_original", "Correctness", 5, "pass on the original", "pass_rate >= 0.85", f"{S}: pass_rate",
         rate("pass_rate", ">=", 0.85)),
        ("x2_fail_mutants", "Correctness", 5, "fail on mutants", "mutation_score >= 0.70", f"{S}: mutation_score",
         rate("mutation_score", ">=", 0.70)),
        ("x3_assertions_meaningful", "Correctness", 5, "assertions meaningful",
         "no_assertion_rate <= 0.05 (samples without any assertion) and function_result_assertion_rate >= 0.80 "
         "(assertions that check the function's result)",
         f"{S}: no_assertion_rate, function_result_assertion_rate", meaningful_assertions),
        ("x4_no_tautologies", "Correctness", 5, "no tautologies",
         "trivial_assertion_rate <= 0.05 (assertions that are trivial, like assert!(true), or tautological, "
         "like assert_eq!(x, x))", f"{S}: trivial_assertion_rate", rate("trivial_assertion_rate", "<=", 0.05)),
        ("v1_branch_coverage_gain", "Coverage", 5, "branch coverage gain over the crate's own tests",
         "branch_coverage_gain >= 0.05 (+5 points)", f"{S}: branch_coverage_gain", rate("branch_coverage_gain", ">=", 0.05)),
        ("v2_line_coverage_gain", "Coverage", 5, "line coverage gain over the crate's own tests",
         "line_coverage_gain >= 0.10 (+10 points)", f"{S}: line_coverage_gain", rate("line_coverage_gain", ">=", 0.10)),
        ("v3_edge_cases_present", "Coverage", 5, "edge cases present",
         "edge_case_rate >= 0.50 (samples whose tests try empty/zero/MIN/MAX/None inputs)", f"{S}: edge_case_rate",
         rate("edge_case_rate", ">=", 0.50)),
        ("e1_peak_vram", "Efficiency", 3, "peak VRAM < 8 GB", f"peak VRAM < {VRAM_LIMIT_MB} MiB during training (CUDA only)",
         "metrics.json peak_vram_mb (torch.cuda.max_memory_reserved, trainer.runtime.peak_vram_mb)", peak_vram),
        ("e2_training_time", "Efficiency", 4, "training < 4 h", f"status finished and train_seconds < {TRAINING_LIMIT_S}",
         "metrics.json: status, train_seconds", training_time),
        ("e3_generation_time", "Efficiency", 3, "generation < 1 s per function",
         f"median_seconds_per_function < {GENERATION_LIMIT_S}", "generation <samples>.summary.json", generation_time),
    ]
    for iid, cat, title in (("g1_generics", "has_generics", "generic functions"),
                            ("g2_lifetimes", "has_lifetimes", "lifetime annotations"),
                            ("g3_async", "is_async", "async functions"),
                            ("g4_unsafe", "has_unsafe", "unsafe code"),
                            ("g5_macros", "uses_macros", "macro-heavy code")):
        rows.append((iid, "Edge cases", 2, title,
                     f"among samples in category {cat}: share that compile and pass >= {CATEGORY_PASS_TARGET}",
                     f"{S}: category_counts/category_pass_counts[{cat}]", category(cat)))
    rows += [
        ("d1_test_names", "Documentation", 2, "descriptive test names", "descriptive_name_rate >= 0.80",
         f"{S}: descriptive_name_rate", rate("descriptive_name_rate", ">=", 0.80)),
        ("d2_comments", "Documentation", 2, "comments present", "comment_rate >= 0.50", f"{S}: comment_rate",
         rate("comment_rate", ">=", 0.50)),
        ("d3_proptest_strategy_names", "Documentation", 1, "clear proptest strategy names",
         "proptest_strategy_rate >= 0.50 (samples whose proptest parameters use a named strategy, as the evaluator "
         "measures it)", f"{S}: proptest_strategy_rate", rate("proptest_strategy_rate", ">=", 0.50)),
    ]
    return OrderedDict((r[0], Item(*r)) for r in rows)


ITEMS: OrderedDict[str, Item] = _items()

# id -> (requirement, threshold, higher values pass): SPEC's P-GATE-001..004.
GATES = OrderedDict([
    ("P-GATE-001", ("total score >= 90 (else the adapter is rejected)", 90, True)),
    ("P-GATE-002", ("compile rate >= 0.90", 0.90, True)),
    ("P-GATE-003", ("mutation score >= 0.70", 0.70, True)),
    ("P-GATE-004", (f"peak VRAM <= {VRAM_LIMIT_MB} MiB", VRAM_LIMIT_MB, False)),
])


def grade(total: float) -> str:
    for floor, letter in ((95, "A+"), (90, "A"), (85, "B+"), (80, "B"), (70, "C")):
        if total >= floor:
            return letter
    return "F"


def _falsifiers_behind(item_id: str, falsifiers: list[dict] | None) -> list[FalsifierBehind]:
    out = []
    for f in falsifiers or []:
        if item_id in (f.get("rubric") or []):
            status = {"passed": "passed", "failed": "failed", "error": "failed"}.get(f.get("outcome"), "not run")
            out.append(FalsifierBehind(nodeid=f.get("nodeid"), falsifier=f.get("falsifier"), tier=f.get("tier"),
                                       outcome=f.get("outcome"), status=status, reason=(f.get("reason") or "")[:500]))
    return out


def judge_item(item: Item, ev: Evidence) -> ScoredItem:
    """One scored item: its own evidence, overruled by any failed falsifier behind it."""
    result = item.judge(ev)
    behind = _falsifiers_behind(item.id, ev.falsifiers)
    refuted = [f["nodeid"] for f in behind if f["status"] == "failed"]
    status, reason = result.status, result.reason
    if refuted:
        status, reason = "failed", f"falsifier(s) failed: {', '.join(refuted)}; {reason}"
    return ScoredItem(id=item.id, category=item.category, title=item.title, points=item.points if status == "passed" else 0,
                      max=item.points, threshold=item.threshold, source=item.source, status=status,
                      evidence=result.evidence, falsifiers=behind, reason=reason)


def _gates(total: int, items: dict[str, ScoredItem], ev: Evidence) -> list[Gate]:
    def gate(gid: str, value: float | None, why_not_run: str = "") -> Gate:
        requirement, threshold, higher = GATES[gid]
        if value is None:
            return Gate(id=gid, requirement=requirement, threshold=threshold, status="not run", passed=None, value=None,
                        reason=why_not_run)
        ok = value >= threshold if higher else value <= threshold
        return Gate(id=gid, requirement=requirement, threshold=threshold, status="passed" if ok else "failed", passed=ok,
                    value=value, reason=f"{requirement.split(' (')[0]}: measured {_fmt(value)}")

    out = [gate("P-GATE-001", total)]
    for gid, key in (("P-GATE-002", "compile_rate"), ("P-GATE-003", "mutation_score")):
        value, skipped = _summary_value(ev, key)
        out.append(gate(gid, None, skipped.reason) if skipped else gate(gid, value))
    vram = items["e1_peak_vram"]
    if vram["status"] == "not run":
        out.append(gate("P-GATE-004", None, vram["reason"]))
    else:
        out.append(gate("P-GATE-004", vram["evidence"]["peak_vram_mb"]))
    return out


def score(ev: Evidence) -> RubricScore:
    """The scored rubric: items, per-category sums, total, grade and gates."""
    items = OrderedDict((iid, judge_item(item, ev)) for iid, item in ITEMS.items())
    total = sum(i["points"] for i in items.values())
    categories = OrderedDict((c, CategoryScore(points=sum(i["points"] for i in items.values() if i["category"] == c), max=m))
                             for c, m in CATEGORIES.items())
    counts = Counts({s: sum(1 for i in items.values() if i["status"] == s) for s in ("passed", "failed", "not run")})
    return RubricScore(rubric_version=RUBRIC_VERSION, total=total, max_total=sum(CATEGORIES.values()), grade=grade(total),
                       counts=counts, categories=categories, gates=_gates(total, items, ev), items=list(items.values()))


def _check_table() -> None:
    """The table above must add up to the rubric's category maxima (a typo would skew every score)."""
    for cat, maximum in CATEGORIES.items():
        got = sum(i.points for i in ITEMS.values() if i.category == cat)
        if got != maximum:
            raise AssertionError(f"rubric category {cat}: items sum to {got}, expected {maximum}")


_check_table()

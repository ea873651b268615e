"""summary.json: its schema (`Summary`, the scored `RubricSummary` fields) and the one function that computes it.

The per-sample records it summarizes are verdict.py's; this module only reads them.
"""

from __future__ import annotations

import statistics
from typing import TypedDict

from trainer.corpus.rust_ast import CATEGORIES

from .verdict import SampleRecord

SUMMARY_FILE = "summary.json"    # the evaluator's output directory: the summary over samples.jsonl


class RubricSummary(TypedDict):
    """The summary fields the rubric scores; falsify.report refuses a summary.json without one."""

    n: int
    compile_rate: float | None
    pass_rate: float | None
    mutation_score: float | None
    line_coverage_gain: float | None
    branch_coverage_gain: float | None
    bleu4: float | None
    codebleu: float | None
    trivial_assertion_rate: float | None
    parse_rate: float | None
    clippy_clean_rate: float | None
    link_rate: float | None
    descriptive_name_rate: float | None
    comment_rate: float | None
    proptest_strategy_rate: float | None
    category_counts: dict[str, int]
    category_pass_counts: dict[str, int]
    seconds_median: float | None
    no_assertion_rate: float | None
    function_result_assertion_rate: float | None
    edge_case_rate: float | None


class Summary(RubricSummary):
    """summary.json: the scored fields, the counts behind them, and the run's environment."""

    failures: int
    failures_by_reason: dict[str, int]
    clippy_samples: int
    mutation_samples_run: int
    mutants: dict[str, int]      # pooled killed, survived, timeout, unviable
    mean_sample_mutation_score: float | None
    coverage_samples: int
    reference_samples: int
    seconds_total: float
    in_crate_samples: int        # samples judged inside their crate
    flaky_samples: int           # samples that passed a run but not every run (failure `flaky`)
    flaky_rate: float | None     # flaky_samples / samples that passed their first run
    offline_limited_samples: int  # could not be judged here: the crate does not build offline, the function's file is
                                  # not in this platform's build, or the code names a crate the build cannot link
                                  # (record field `unavailable_crates`)
    judged_pass_rate: float | None  # passing samples / (n - offline_limited_samples)
    line_coverage_delta: float | None    # mean of (with tests - no-test baseline): plain coverage, not scored
    branch_coverage_delta: float | None
    coverage_improved_samples: int      # samples whose tests raise the line or branch coverage of the existing tests
    coverage_improved_rate: float | None  # coverage_improved_samples / n (TestGen-LLM's "improves coverage" filter)
    test_runs: int               # runs a passing sample gets (1 + reruns)
    wall_seconds: float          # the whole run, from the first sample to the last
    jobs: int                    # samples evaluated in parallel
    toolchain: str               # `rustc --version`


# Fields every summary.json carries; readers (falsify.report) refuse a summary without one.
SUMMARY_FIELDS: tuple[str, ...] = tuple(RubricSummary.__annotations__)


# ---- the summary over all records ------------------------------------------------------------
def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _difference(after: float | None, before: float | None) -> float:
    """A coverage delta; 0 when either side was never measured (did not compile, bad input): it gained nothing."""
    return after - before if after is not None and before is not None else 0.0


def _improves_coverage(rec: SampleRecord) -> bool:
    """TestGen-LLM's filter: the generated tests cover a line or a branch outcome that the existing tests do not."""
    return (rec["line_coverage_gain"] or 0.0) > 0 or (rec["branch_coverage_gain"] or 0.0) > 0


def summarize(records: list[SampleRecord], *, wall_seconds: float, jobs: int, toolchain: str, test_runs: int = 1) -> Summary:
    """The summary over every record (README, "summary.json"), with the run's wall time and environment."""
    n = len(records)
    ok = [r for r in records if r["compiles"] and r["passes"]]
    ran = [r for r in records if r["mutation_score"] is not None]
    killed = sum(r["mutants"]["killed"] for r in ran)
    survived = sum(r["mutants"]["survived"] for r in ran)
    timeout = sum(r["mutants"]["timeout"] for r in ran)
    unviable = sum(r["mutants"]["unviable"] for r in ran)
    # Deltas (over the no-test baseline) and gains (over the existing tests): a sample whose tests were
    # never measured (did not compile, bad input) gained nothing, so it counts as 0 rather than vanishing.
    line_deltas = [_difference(r["line_coverage"], r["baseline_line_coverage"]) for r in records]
    branch_deltas = [_difference(r["branch_coverage"], r["baseline_branch_coverage"]) for r in records if r["function_branches"] != 0]
    improved = sum(_improves_coverage(r) for r in records)
    with_ref = [r for r in records if r["bleu4"] is not None]
    asserts = sum(r["assertions"]["count"] for r in records)
    weak = sum(r["assertions"]["trivial"] + r["assertions"]["tautological"] + r["assertions"]["cannot_fail"] for r in records)
    names = sum(r["test_names"]["count"] for r in records)
    clippy = [r for r in records if r["clippy_warnings"] is not None]
    limited = sum(r["failure"] in ("crate_build", "not_in_build") or bool(r["unavailable_crates"]) for r in records)
    failures: dict[str, int] = {}
    for r in records:
        if r["failure"]:
            failures[r["failure"]] = failures.get(r["failure"], 0) + 1
    return {
        "n": n,
        "failures": sum(1 for r in records if r["failure"]),
        "parse_rate": _rate(sum(r["parses"] for r in records), n),
        "compile_rate": _rate(sum(r["compiles"] for r in records), n),
        "link_rate": _rate(sum(r["links"] for r in records), n),
        "pass_rate": _rate(len(ok), n),
        "clippy_clean_rate": _rate(sum(r["clippy_warnings"] == 0 for r in clippy), len(clippy)),
        "clippy_samples": len(clippy),
        "mutation_score": _rate(killed, killed + survived + timeout),
        "mutation_samples_run": len(ran),
        "mutants": {"killed": killed, "survived": survived, "timeout": timeout, "unviable": unviable},
        "mean_sample_mutation_score": _mean([r["mutation_score"] for r in ran]),
        "line_coverage_delta": _mean(line_deltas),
        "branch_coverage_delta": _mean(branch_deltas),
        "coverage_samples": sum(r["line_coverage"] is not None for r in records),
        "line_coverage_gain": _mean([r["line_coverage_gain"] or 0.0 for r in records]),
        "branch_coverage_gain": _mean([r["branch_coverage_gain"] or 0.0 for r in records if r["function_branches"] != 0]),
        "coverage_improved_samples": improved,
        "coverage_improved_rate": _rate(improved, n),
        "bleu4": _mean([r["bleu4"] for r in with_ref]),
        "codebleu": _mean([r["codebleu"] for r in with_ref if r["codebleu"] is not None]),
        "reference_samples": len(with_ref),
        "trivial_assertion_rate": _rate(min(weak, asserts), asserts),  # a self-panicking should_panic test has no assert
        "no_assertion_rate": _rate(sum(r["assertions"]["count"] == 0 for r in records), n),
        "function_result_assertion_rate": _rate(sum(r["assertions"]["uses_function_result"] for r in records), asserts),
        "descriptive_name_rate": _rate(sum(r["test_names"]["descriptive"] for r in records), names),
        "comment_rate": _rate(sum(r["has_comments"] for r in records), n),
        "proptest_strategy_rate": _rate(sum(bool(r["proptest_strategies"]) for r in records), n),
        "edge_case_rate": _rate(sum(bool(r["edge_cases"]) for r in records), n),
        "category_counts": {c: sum(r["categories"][c] for r in records) for c in CATEGORIES},
        "category_pass_counts": {c: sum(r["categories"][c] for r in ok) for c in CATEGORIES},
        "seconds_median": statistics.median([r["seconds"] for r in records]) if records else None,
        "seconds_total": sum(r["seconds"] for r in records),
        "failures_by_reason": failures,
        "in_crate_samples": sum(r["crate"] is not None for r in records),
        "flaky_samples": failures.get("flaky", 0),
        "offline_limited_samples": limited,
        "judged_pass_rate": _rate(len(ok), n - limited),
        "flaky_rate": _rate(failures.get("flaky", 0), failures.get("flaky", 0) + len(ok)),
        "test_runs": test_runs,
        "wall_seconds": wall_seconds,
        "jobs": jobs,
        "toolchain": toolchain,
    }

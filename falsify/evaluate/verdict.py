"""The per-sample record and the summary over all records (field names are a contract).

Other tools read these names; README documents each. A sample that could not be
evaluated (bad input line, refused code) still gets a full record, with `failure` set,
so the summary's denominators always count every input line.
"""

from __future__ import annotations

import statistics

from trainer.corpus.rust_ast import CATEGORIES

SAMPLES_FILE = "samples.jsonl"  # the evaluator's output directory: one record per input line
SUMMARY_FILE = "summary.json"    # ... and the summary over them

# Fields every summary.json carries; readers (falsify.report) refuse a summary without one.
SUMMARY_FIELDS = (
    "n", "compile_rate", "pass_rate", "mutation_score", "line_coverage_delta", "branch_coverage_delta",
    "bleu4", "codebleu", "trivial_assertion_rate", "parse_rate", "clippy_clean_rate", "link_rate",
    "descriptive_name_rate", "comment_rate", "proptest_strategy_rate", "category_counts",
    "category_pass_counts", "seconds_median", "no_assertion_rate", "function_result_assertion_rate",
    "edge_case_rate",
)

FAILURE_KINDS = ("input", "refused", "parse", "compile", "no_tests", "test_failure", "timeout", "output", "internal")


def empty_record(sample_id: str, line: int) -> dict:
    return {
        "id": sample_id, "line": line,
        "parses": False, "compiles": False, "links": False, "passes": False,
        "failure": None,
        "tests_run": 0, "failing_tests": [],
        "clippy_warnings": None,
        "mutation_score": None,
        "mutants": {"killed": 0, "survived": 0, "timeout": 0, "unviable": 0, "survivors": []},
        "line_coverage": None, "branch_coverage": None,
        "baseline_line_coverage": None, "baseline_branch_coverage": None,
        "function_lines": None, "function_branches": None,
        "assertions": {"count": 0, "trivial": 0, "tautological": 0, "uses_function_result": 0},
        "bleu4": None, "codebleu": None, "codebleu_components": None,
        "categories": {c: False for c in CATEGORIES},
        "test_names": {"count": 0, "descriptive": 0},
        "has_comments": False,
        "proptest_strategies": [],
        "edge_cases": [],
        "seconds": 0.0,
        "timings": {},
        "reasons": [],
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def summarize(records: list[dict]) -> dict:
    n = len(records)
    ok = [r for r in records if r["compiles"] and r["passes"]]
    ran = [r for r in records if r["mutation_score"] is not None]
    killed = sum(r["mutants"]["killed"] for r in ran)
    survived = sum(r["mutants"]["survived"] for r in ran)
    timeout = sum(r["mutants"]["timeout"] for r in ran)
    unviable = sum(r["mutants"]["unviable"] for r in ran)
    # Coverage gain over the no-test baseline; a sample whose tests were never measured
    # (did not compile, bad input) gained nothing, so it counts as 0 rather than vanishing.
    line_deltas = [(r["line_coverage"] - r["baseline_line_coverage"])
                   if r["line_coverage"] is not None and r["baseline_line_coverage"] is not None else 0.0
                   for r in records]
    branch_deltas = [(r["branch_coverage"] - r["baseline_branch_coverage"])
                     if r["branch_coverage"] is not None and r["baseline_branch_coverage"] is not None else 0.0
                     for r in records if r["function_branches"] != 0]
    with_ref = [r for r in records if r["bleu4"] is not None]
    asserts = sum(r["assertions"]["count"] for r in records)
    weak = sum(r["assertions"]["trivial"] + r["assertions"]["tautological"] for r in records)
    names = sum(r["test_names"]["count"] for r in records)
    clippy = [r for r in records if r["clippy_warnings"] is not None]
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
        "bleu4": _mean([r["bleu4"] for r in with_ref]),
        "codebleu": _mean([r["codebleu"] for r in with_ref if r["codebleu"] is not None]),
        "reference_samples": len(with_ref),
        "trivial_assertion_rate": _rate(weak, asserts),
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
    }

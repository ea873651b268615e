"""Tier-2 check that the Rust evaluator tells good tests from weak, broken and failing ones."""

from __future__ import annotations

import tempfile
from pathlib import Path

from falsify.checks.registry import Verdict, check
from trainer.files import read_jsonl

FUNCTION = """pub fn weighted_sum(a: i64, b: i64, w: i64) -> i64 {
    if w > 0 { a * w + b } else { a - b }
}"""

SAMPLES = {
    "good": """#[test]
fn test_weighted_sum_positive_weight_scales_a() {
    // a positive weight multiplies a and adds b
    assert_eq!(weighted_sum(2, 3, 4), 11);
}

#[test]
fn test_weighted_sum_zero_weight_subtracts() {
    assert_eq!(weighted_sum(5, 2, 0), 3);
}

#[test]
fn test_weighted_sum_negative_weight_subtracts() {
    assert_eq!(weighted_sum(5, 2, -1), 3);
}""",
    "tautology": """#[test]
fn test_weighted_sum_is_stable() {
    assert_eq!(weighted_sum(1, 2, 3), weighted_sum(1, 2, 3));
    assert!(true);
}""",
    "broken": """#[test]
fn test_weighted_sum_typo() {
    assert_eq!(weighted_sm(1, 2, 3), 5);
}""",
    "failing": """#[test]
fn test_weighted_sum_wrong_expectation() {
    assert_eq!(weighted_sum(2, 3, 4), 12);
}""",
}


@check("evaluator_discriminates")
def evaluator_discriminates(*, min_good_mutation_score: float = 0.8) -> Verdict:
    """Known-good tests compile, pass and kill mutants; a tautology is flagged; broken and failing tests say why."""
    from falsify.evaluate import evaluate_samples
    from falsify.evaluate.verdict import SAMPLES_FILE

    samples = [{"id": k, "function_code": FUNCTION, "generated_tests": v} for k, v in SAMPLES.items()]
    with tempfile.TemporaryDirectory(prefix="rtf-eval-") as tmp:
        summary = evaluate_samples(samples, Path(tmp), coverage=False)
        records = {r["id"]: r for r in read_jsonl(Path(tmp) / SAMPLES_FILE)}
    good, taut, broken, failing = (records[k] for k in ("good", "tautology", "broken", "failing"))
    checks = {
        "good compiles and passes": good["compiles"] and good["passes"],
        "good kills mutants": (good["mutation_score"] or 0) >= min_good_mutation_score,
        "tautology flagged": taut["assertions"]["tautological"] > 0 or taut["assertions"]["trivial"] > 0,
        "broken does not compile, with the compiler's reason":
            not broken["compiles"] and any("weighted_sm" in r for r in broken["reasons"]),
        "failing test named": failing["compiles"] and not failing["passes"]
        and "test_weighted_sum_wrong_expectation" in " ".join(failing["failing_tests"]),
    }
    observed = {**checks, "good_mutation_score": good["mutation_score"], "compile_rate": summary["compile_rate"],
                "pass_rate": summary["pass_rate"]}
    bad = [k for k, ok in checks.items() if not ok]
    return Verdict(not bad, observed, "all four samples judged as expected" if not bad else f"misjudged: {', '.join(bad)}")

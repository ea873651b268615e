"""End-to-end verdicts on real Rust: good, weak, broken, failing tests and bad input lines (runs cargo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eval_cases import (
    CLAMP,
    CLAMP_AS_MODULE,
    CLAMP_BROKEN,
    CLAMP_DENIES_A_LINT,
    CLAMP_FAILING,
    CLAMP_GOOD,
    CLAMP_WEAK,
    GENERIC_MAX,
    GENERIC_MAX_TESTS,
    sample,
)

from falsify.evaluate import evaluate_samples

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-out")
    path = out / "samples.in.jsonl"
    rows = [sample("good", CLAMP, CLAMP_GOOD, reference_tests=CLAMP_GOOD),
            sample("weak", CLAMP, CLAMP_WEAK, reference_tests=CLAMP_GOOD),
            sample("broken", CLAMP, CLAMP_BROKEN),
            sample("failing", CLAMP, CLAMP_FAILING),
            sample("module", CLAMP, CLAMP_AS_MODULE),
            sample("generic", GENERIC_MAX, GENERIC_MAX_TESTS),
            sample("denies-a-lint", CLAMP, CLAMP_DENIES_A_LINT)]
    with open(path, "wb") as fh:
        for r in rows[:3]:
            fh.write((json.dumps(r) + "\n").encode())
        fh.write(b"{this is not json\n")
        for r in rows[3:]:
            fh.write((json.dumps(r) + "\n").encode())
        fh.write((json.dumps({"id": "empty", "function_code": CLAMP, "generated_tests": ""}) + "\n").encode())
    summary = evaluate_samples(path, out, jobs=2)
    records = {r["id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    return summary, records, out


@pytest.mark.slow
def test_good_tests_pass_kill_mutants_and_cover_the_function(evaluated):
    _, rec, _ = evaluated
    good = rec["good"]
    assert good["parses"] and good["compiles"] and good["links"] and good["passes"] and good["failure"] is None
    assert good["tests_run"] == 4 and good["failing_tests"] == []
    assert good["line_coverage"] == 1.0 and good["branch_coverage"] == 1.0
    assert good["baseline_line_coverage"] == 0.0 and good["baseline_branch_coverage"] == 0.0
    # body -> 0, 1, -1 and every other comparison are killed; `x < lo` -> `x <= lo` and `x > hi` -> `x >= hi` are
    # equivalent mutants of clamp
    assert good["mutants"]["killed"] == 11 and good["mutants"]["survived"] == 2
    assert good["mutation_score"] == pytest.approx(11 / 13)
    assert any("+    if x <= lo {" in d for d in good["mutants"]["survivors"])
    assert good["bleu4"] == pytest.approx(1.0) and good["codebleu"] == pytest.approx(1.0)
    assert good["clippy_warnings"] == 0 and good["has_comments"] and good["proptest_strategies"] == ["any::<i32>()"]


@pytest.mark.slow
def test_standalone_gain_is_the_no_test_delta(evaluated):
    """A standalone crate has no tests of its own: existing = the no-test baseline, so the gain is the old delta."""
    summary, rec, _ = evaluated
    measured = [r for r in rec.values() if r["line_coverage"] is not None]
    assert len(measured) >= 4 and all(r["line_coverage_gain"] > 0 for r in measured)
    for r in measured:
        assert (r["line_coverage_existing"], r["branch_coverage_existing"]) == (r["baseline_line_coverage"], r["baseline_branch_coverage"])
        assert (r["line_coverage_with_generated"], r["branch_coverage_with_generated"]) == (r["line_coverage"], r["branch_coverage"])
        assert r["line_coverage_gain"] == r["line_coverage"] - r["baseline_line_coverage"]
        if r["branch_coverage"] is not None:
            assert r["branch_coverage_gain"] == r["branch_coverage"] - r["baseline_branch_coverage"]
    assert summary["line_coverage_gain"] == summary["line_coverage_delta"] > 0
    assert summary["branch_coverage_gain"] == summary["branch_coverage_delta"] > 0
    assert summary["coverage_improved_samples"] == len(measured)


@pytest.mark.slow
def test_weak_tests_pass_but_kill_nothing(evaluated):
    weak = evaluated[1]["weak"]
    assert weak["passes"] and weak["mutation_score"] == 0.0 and weak["mutants"]["survived"] == 13
    assert weak["assertions"] == {"count": 2, "trivial": 1, "tautological": 1, "uses_function_result": 0, "cannot_fail": 0}
    assert weak["line_coverage"] < 1.0 and weak["clippy_warnings"] >= 1
    assert weak["test_names"] == {"count": 1, "descriptive": 0}
    assert weak["bleu4"] < 0.2


@pytest.mark.slow
def test_a_lint_the_tests_deny_does_not_fail_their_build(evaluated):
    """clippy runs inside the test build; a lint the tests themselves deny must not turn into a compile failure."""
    denied = evaluated[1]["denies-a-lint"]
    assert denied["compiles"] and denied["passes"] and denied["failure"] is None
    assert denied["clippy_warnings"] is None
    assert any(r.startswith("clippy failed on this code") for r in denied["reasons"])


@pytest.mark.slow
def test_broken_and_failing_tests_carry_their_reason(evaluated):
    _, rec, _ = evaluated
    broken = rec["broken"]
    assert broken["parses"] and not broken["compiles"] and broken["failure"] == "compile"
    assert "E0061" in broken["reasons"][-1] and broken["mutation_score"] is None
    failing = rec["failing"]
    assert failing["compiles"] and not failing["passes"] and failing["failure"] == "test_failure"
    assert failing["failing_tests"] == ["tests::clamp_keeps_large_values"]
    assert failing["mutation_score"] is None
    assert any("tests do not pass" in r for r in failing["reasons"])


@pytest.mark.slow
def test_module_tests_and_generics(evaluated):
    _, rec, _ = evaluated
    assert rec["module"]["passes"] and rec["module"]["mutation_score"] == pytest.approx(11 / 13)
    generic = rec["generic"]
    assert generic["passes"] and generic["categories"]["has_generics"]
    assert generic["mutants"]["killed"] >= 1


@pytest.mark.slow
def test_bad_lines_are_failures_with_line_numbers(evaluated):
    summary, rec, _ = evaluated
    assert rec["line-4"]["failure"] == "input" and "line 4: malformed JSON" in rec["line-4"]["reasons"][0]
    assert rec["empty"]["failure"] == "input" and "line 9" in rec["empty"]["reasons"][0]
    assert summary["n"] == 9 and summary["failures_by_reason"]["input"] == 2
    assert summary["compile_rate"] == pytest.approx(6 / 9) and summary["pass_rate"] == pytest.approx(5 / 9)
    assert summary["category_counts"]["has_generics"] == 1 and summary["category_pass_counts"]["has_generics"] == 1
    lines = [json.loads(x)["line"] for x in (evaluated[2] / "samples.jsonl").read_text().splitlines()]
    assert lines == sorted(lines) and len(lines) == 9


def test_missing_toolchain_is_one_line_and_exit_2(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps(sample("a", CLAMP, CLAMP_GOOD)) + "\n")
    bindir = tmp_path / "empty-bin"  # a PATH with no cargo, llvm-22 or util-linux
    bindir.mkdir()
    proc = subprocess.run([sys.executable, "-m", "falsify.evaluate", "--samples", str(samples), "--out",
                           str(tmp_path / "out")], cwd=ROOT, env={"PATH": str(bindir), "HOME": str(tmp_path)},
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "llvm-22" in proc.stderr and "util-linux" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_samples_file_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "falsify.evaluate", "--samples", str(tmp_path / "nope.jsonl"),
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "samples file not found" in proc.stderr

"""The harness check in the runner and the verdict: what the listing, the run and the runs alone must agree on.

The sandbox is replaced by canned libtest outputs (a fake `run_test_binary`), so these run in
milliseconds; tests/evaluate/test_eval_attacks.py runs the real attacks end to end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from falsify.evaluate import libtest, verdict
from falsify.evaluate.libtest import LibtestReport, run_each_alone, run_tests
from falsify.evaluate.sandbox import Limits, RunResult
from falsify.evaluate.verdict import empty_record, record_reruns, record_tests

LIMITS = Limits(wall_s=10)
LISTING = "tests::a: test\ntests::b: test\n"
WHOLE_PASS = """
running 2 tests
test tests::a ... ok
test tests::b ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""


def _alone(name: str, outcome: str = "ok") -> str:
    failed = outcome == "FAILED"
    return (f"\nrunning 1 test\ntest {name} ... {outcome}\n\ntest result: {'FAILED' if failed else 'ok'}. "
            f"{0 if failed else 1} passed; {1 if failed else 0} failed; 0 ignored; 0 measured; 1 filtered out; "
            "finished in 0.00s\n")


def _run(stdout: str, returncode: int | None = 0, timed_out: bool = False) -> RunResult:
    return RunResult(returncode, stdout, "", timed_out, False, 0.01)


class FakeBinary:
    """Answers each run_test_binary call by its arguments, and remembers them."""

    def __init__(self, listing: str, whole: str, alone: dict[str, RunResult] | None = None):
        self.listing, self.whole, self.alone = listing, whole, alone or {}
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, executable, sample_dir, *, uid, limits, mutant=None, profile_dir=None, args=(), run_dir_name="run"):
        self.calls.append(tuple(args))
        if "--list" in args:
            return _run(self.listing)
        if "--exact" in args:
            name = args[args.index("--exact") + 1]
            return self.alone.get(name) or _run(_alone(name))
        return _run(self.whole)


@pytest.fixture
def binary(monkeypatch):
    def install(listing: str = LISTING, whole: str = WHOLE_PASS, alone: dict[str, RunResult] | None = None) -> FakeBinary:
        fake = FakeBinary(listing, whole, alone)
        monkeypatch.setattr(libtest, "run_test_binary", fake)
        return fake
    return install


def _report(**kwargs) -> LibtestReport:
    return run_tests(Path("/nonexistent/test-binary"), Path("/nonexistent"), uid=61000, limits=LIMITS, **kwargs)


def _alone_report(names: tuple[str, ...] = ("tests::a", "tests::b")) -> LibtestReport:
    return run_each_alone(Path("/nonexistent/test-binary"), Path("/nonexistent"), names, uid=61000, limits=LIMITS)


def test_the_listing_runs_first_with_the_filter_of_the_real_run(binary):
    fake = binary()
    _report(name_filter="crate::rtf_generated_1::")
    assert fake.calls == [("--list", "--format", "terse", "crate::rtf_generated_1::"), ("crate::rtf_generated_1::",)]


def test_an_honest_pass_is_run_alone_test_by_test_and_passes(binary):
    fake = binary()
    report = _report(declared=frozenset({"a", "b"}))
    assert (report.bypass, report.tests_run, report.passed_tests) == (None, 2, ("tests::a", "tests::b"))
    assert verdict.tests_failure(_alone_report(report.passed_tests), LIMITS) is None
    assert fake.calls[2:] == [("--exact", "tests::a"), ("--exact", "tests::b")]


def test_a_test_that_fails_alone_honestly_is_flaky(binary):
    binary(alone={"tests::b": _run(_alone("tests::b", "FAILED"), 101)})
    assert verdict.tests_failure(_alone_report(), LIMITS) == (
        "flaky", "flaky: tests::b passed among all tests, but fails alone (exit status 101)")


def test_a_forger_run_alone_shows_its_forgery_even_after_its_victim(binary):
    forger = _alone("tests::b").replace("test result", "test tests::a ... ok\n\ntest result")
    binary(alone={"tests::a": _run(_alone("tests::a", "FAILED"), 101), "tests::b": _run(forger)})
    assert verdict.tests_failure(_alone_report(), LIMITS) == (
        "harness_bypassed", "harness_bypassed: tests::b passed among all tests, but its run alone is not libtest's: "
        "reported but not listed: tests::a, exit status 0")


def test_a_timeout_alone_is_a_timeout(binary):
    binary(alone={"tests::a": _run("", None, timed_out=True)})
    assert verdict.tests_failure(_alone_report(), LIMITS)[0] == "timeout"


def test_a_test_that_crashes_alone_after_reporting_is_flaky(binary):
    """It reported ok, then the process aborted before libtest's summary."""
    binary(alone={"tests::a": _run("\nrunning 1 test\ntest tests::a ... ok\n", 134)})
    assert _alone_report().fails_alone == "flaky: tests::a passed among all tests, but fails alone (exit status 134)"


def test_a_bypass_alone_fails_a_sample_that_passed_its_runs(binary):
    binary()
    rec = empty_record("s", 1)
    record_tests(rec, _report(), LIMITS)
    bypassed = LibtestReport(_run(""), 2, [], "harness_bypassed: tests::b passed among all tests, but ...")
    record_reruns(rec, [], LIMITS, alone=bypassed)
    assert (rec["failure"], rec["passes"], rec["runs"], rec["reasons"][-1]) == (
        "harness_bypassed", False, 1, "harness_bypassed: tests::b passed among all tests, but ...")


def test_a_listing_without_a_declared_test_is_bypassed(binary):
    binary()
    assert verdict.tests_failure(_report(declared=frozenset({"a", "c"})), LIMITS) == (
        "harness_bypassed", "harness_bypassed: 1 #[test] fns of the source are not in the listing: c")


def test_record_tests_gives_the_bypass_its_own_failure_kind(binary):
    binary(whole=WHOLE_PASS.replace("test tests::b ... ok\n", ""))
    rec = empty_record("s", 1)
    record_tests(rec, _report(), LIMITS)
    assert (rec["failure"], rec["passes"], rec["reasons"]) == (
        "harness_bypassed", False, ["harness_bypassed: 2 tests listed, 1 reported, exit status 0"])


def test_a_bypassed_rerun_is_a_bypass_not_flakiness(binary):
    binary()
    rec = empty_record("s", 1)
    record_tests(rec, _report(), LIMITS)
    bypassed = LibtestReport(_run(WHOLE_PASS), 2, [], "harness_bypassed: 2 tests listed, 1 reported, exit status 0")
    record_reruns(rec, [_report(), bypassed], LIMITS)
    assert (rec["failure"], rec["passes"], rec["runs"], rec["runs_passed"]) == ("harness_bypassed", False, 3, 2)


def test_a_failing_rerun_is_still_flaky(binary):
    rec = empty_record("s", 1)
    binary()
    record_tests(rec, _report(), LIMITS)
    failing = LibtestReport(_run("", 101), 2, ["tests::b"])
    record_reruns(rec, [failing], LIMITS)
    assert rec["failure"] == "flaky"


def test_should_panic_tests_count_as_tests_that_ran(binary):
    binary(listing="tests::p: test\n", whole=_alone("tests::p - should panic").replace("1 filtered", "0 filtered"))
    report = _report(declared=frozenset({"p"}))
    assert (report.tests_run, verdict.tests_failure(report, LIMITS)) == (1, None)


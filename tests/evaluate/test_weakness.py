"""Weakness detection: assertions that cannot fail (assertions.py), their reasons and rate (verdict.py,
summary.py), and "every test passes, no mutant is killed" (verdict.record_mutation). Pure Python, fast."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_cases import CLAMP, CLAMP_GOOD, sample

from falsify.evaluate import assertions
from falsify.evaluate.mutation_runner import MutationResult
from falsify.evaluate.samples import from_dicts
from falsify.evaluate.summary import summarize
from falsify.evaluate.verdict import empty_record, record_mutation, record_static_analysis

ATTACKS = Path(__file__).parent / "attacks"


def _counts(tests: str) -> dict:
    return assertions.analyse(tests, CLAMP).assertions


def test_an_assertion_inside_a_dropped_catch_unwind_cannot_fail():
    facts = assertions.analyse((ATTACKS / "weak_assertion_catch_unwind.rs").read_text(), CLAMP)
    assert facts.assertions["cannot_fail"] == 1 and facts.assertions["tautological"] == 0
    assert "assert_eq! at line 6 runs inside catch_unwind" in facts.cannot_fail[0]


@pytest.mark.parametrize("tests", [
    "#[test]\nfn t() { std::panic::catch_unwind(|| { assert_eq!(clamp(1, 5, 0), 1); }).ok(); }",
    "#[test]\nfn t() { std::thread::spawn(|| { assert_eq!(clamp(1, 5, 0), 1); }); }",
    "#[test]\nfn t() { let _ = std::thread::spawn(move || assert_eq!(clamp(1, 5, 0), 1)).join(); }",
])
def test_other_swallowed_panics_cannot_fail(tests):
    assert _counts(tests)["cannot_fail"] == 1


@pytest.mark.parametrize("tests", [
    "#[test]\nfn t() { assert!(std::panic::catch_unwind(|| { assert_eq!(clamp(1, 5, 0), 1); }).is_err()); }",
    "#[test]\nfn t() { let r = std::panic::catch_unwind(|| { assert_eq!(clamp(1, 5, 0), 1); }); assert!(r.is_err()); }",
    "#[test]\nfn t() { std::thread::spawn(|| { assert_eq!(clamp(1, 5, 0), 1); }).join().unwrap(); }",
])
def test_a_caught_panic_whose_result_is_checked_can_fail(tests):
    assert _counts(tests)["cannot_fail"] == 0


@pytest.mark.parametrize("tests", ["#[test]\nfn t() { assert!(clamp(15, 0, 10) == 11 || true); }",
                                   "#[test]\nfn t() { assert!(true || clamp(15, 0, 10) == 11); }",
                                   "#[test]\nfn t() { let x = clamp(1, 0, 2); assert!(x == x); }",
                                   "#[test]\nfn t() { assert_eq!(clamp(1, 0, 2), clamp(1, 0, 2)); }",
                                   "#[test]\nfn t() { assert!(clamp(1, 0, 2) == clamp(1, 0, 2)); }"])
def test_always_true_assertions_are_tautological(tests):
    assert _counts(tests)["tautological"] == 1


@pytest.mark.parametrize("tests", ["#[test]\nfn t() { assert!(retry(|| true)); }",
                                   "#[test]\nfn t() { assert!(clamp(1, 0, 2) == 1 || (clamp(2, 0, 2) == 2 && true)); }"])
def test_a_closure_or_a_nested_true_is_no_tautology(tests):
    assert _counts(tests)["tautological"] == 0


@pytest.mark.parametrize("body", ['let _ = clamp(1, 5, 0);\n    panic!("boom");', "clamp(1, 5, 0);\n    unreachable!();",
                                  "clamp(1, 5, 0);\n    None::<u8>.unwrap();", 'let _x: u8 = Err::<u8, &str>("e").unwrap();',
                                  "todo!()", 'Option::<u8>::None.expect("x");', "assert!(false);"])
def test_a_should_panic_test_that_panics_on_its_own_cannot_fail(body):
    facts = assertions.analyse(f"#[test]\n#[should_panic]\nfn t() {{\n    {body}\n}}\n", CLAMP)
    assert facts.assertions["cannot_fail"] == 1 and "#[should_panic] test t panics on its own" in facts.cannot_fail[0]


@pytest.mark.parametrize("tests", [(ATTACKS / "should_panic_only.rs").read_text(),
                                   "#[test]\n#[should_panic]\nfn t() { if clamp(1, 5, 0) == 1 { panic!(\"x\") } }",
                                   "#[test]\nfn t() { panic!(\"not a should_panic test: it fails\"); }"])
def test_a_should_panic_test_that_needs_the_function_to_panic_can_fail(tests):
    assert _counts(tests)["cannot_fail"] == 0


def test_honest_tests_have_nothing_that_cannot_fail():
    assert _counts(CLAMP_GOOD) == {"count": 4, "trivial": 0, "tautological": 0, "cannot_fail": 0, "uses_function_result": 4}


def test_what_cannot_fail_becomes_a_weak_tests_reason():
    rec = empty_record("a", 1)
    record_static_analysis(rec, from_dicts([sample("a", CLAMP, (ATTACKS / "weak_assertion_catch_unwind.rs").read_text())])[0])
    assert rec["assertions"]["cannot_fail"] == 1
    assert any(r.startswith("weak tests: cannot fail: assert_eq! at line 6") for r in rec["reasons"]), rec["reasons"]


def test_passing_tests_that_kill_no_mutant_are_weak():
    rec = empty_record("a", 1)
    record_mutation(rec, MutationResult(ran=True, verdicts={1: "survived", 2: "survived", 3: "unviable"},
                                      descriptions={1: "a", 2: "b", 3: "c"}))
    assert rec["mutation_score"] == 0 and "weak tests: every test passes and no mutant is killed (mutation score 0)" in rec["reasons"]
    killed = empty_record("b", 1)
    record_mutation(killed, MutationResult(ran=True, verdicts={1: "killed", 2: "survived"}, descriptions={1: "a", 2: "b"}))
    assert not any("no mutant is killed" in r for r in killed["reasons"])
    unviable = empty_record("c", 1)
    record_mutation(unviable, MutationResult(ran=True, verdicts={1: "unviable"}, descriptions={1: "a"}))
    assert not any("no mutant is killed" in r for r in unviable["reasons"])


def test_the_weak_assertion_rate_counts_what_cannot_fail_and_stays_a_rate():
    def rec(sid: str, count: int, cannot_fail: int):
        return empty_record(sid, 1) | {"assertions": {"count": count, "trivial": 0, "tautological": 0,
                                                      "cannot_fail": cannot_fail, "uses_function_result": 0}}
    summary = summarize([rec("a", 4, 1), rec("b", 0, 0)], wall_seconds=0.0, jobs=1, toolchain="rustc test")
    assert summary["trivial_assertion_rate"] == 0.25
    capped = summarize([rec("a", 1, 3)], wall_seconds=0.0, jobs=1, toolchain="rustc test")
    assert capped["trivial_assertion_rate"] == 1.0

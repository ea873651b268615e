"""The test critic's data (issue 19, item 2): candidates of known intent, labels the evaluator verifies, splits by crate."""

from __future__ import annotations

import json
import random

import pytest

from trainer.corpus import critic, rust_ast
from trainer.corpus.critic import (
    assert_sites,
    crate_split,
    critic_text,
    perturb_expectation,
    trivialize,
    verified_label,
)

TESTS = '''use super::*;

#[test]
fn sums() {
    let total = add(2, 3);
    assert_eq!(total, 5u32, "two and three");
    assert_ne!(add(1, 1), 3);
    assert!(total > 1);
}

proptest! {
    #[test]
    fn commutes(a in 0u32..10, b in 0u32..10) {
        prop_assert_eq!(add(a, b), add(b, a));
    }
}
'''


def test_assert_sites_find_parsed_and_token_tree_assertions_with_their_arguments():
    sites = assert_sites(TESTS)
    assert [s.name for s in sites] == ["assert_eq", "assert_ne", "assert", "prop_assert_eq"]
    data = TESTS.encode()
    assert [data[a:b].decode() for a, b in sites[0].args] == ["total", "5u32", '"two and three"']


def test_trivialize_makes_every_assertion_one_that_cannot_fail_and_still_parses():
    out = trivialize(TESTS)
    assert "assert!((total) == (5u32) || true);" in out and "assert!((add(1, 1)) != (3) || true);" in out
    assert "assert!((total > 1) || true);" in out and "prop_assert!((add(a, b)) == (add(b, a)) || true);" in out
    assert "assert_eq!" not in out and "two and three" not in out
    assert not rust_ast.has_syntax_errors(rust_ast.parse(out))
    assert trivialize("#[test]\nfn nothing() {\n    let _ = 1;\n}\n") is None


def test_perturb_changes_one_expected_literal_and_keeps_its_type():
    outs = {perturb_expectation(TESTS, random.Random(seed)) for seed in range(20)}
    assert outs == {TESTS.replace("5u32", "6u32")}  # the only literal on an expected side of an assert_eq!
    assert perturb_expectation("#[test]\nfn f() { assert_eq!(g(), h()); }\n", random.Random(0)) is None


@pytest.mark.parametrize("code, expected", [
    ("assert_eq!(f(), true);", "assert_eq!(f(), false);"),
    ('assert_eq!(name(), "abc");', 'assert_eq!(name(), "abc?");'),
    ("assert_eq!(c(), 'a');", "assert_eq!(c(), 'b');"),
    ("assert_eq!(x(), 1.5f64);", "assert_eq!(x(), 3.0f64);"),
    ("assert_eq!(10, n());", "assert_eq!(11, n());"),  # expected first: the side with the literal
    ("assert_eq!(v(), Some(-7i64));", "assert_eq!(v(), Some(-8i64));"),
])
def test_perturbed_literal_kinds(code, expected):
    tests = f"#[test]\nfn t() {{\n    {code}\n}}\n"
    assert perturb_expectation(tests, random.Random(0)) == tests.replace(code, expected)


def verdict(**kw) -> dict:
    base = {"passes": False, "failure": None, "assertions": {"count": 1, "trivial": 0, "tautological": 0}}
    return {**base, **kw}


def sample(intent: str, tests: str = "#[test]\nfn t() { assert_eq!(other(1), 2); }\n") -> dict:
    return {"generated_tests": tests, "metadata": {"function": "add", "critic": {"intent": intent}}}


@pytest.mark.parametrize("intent, v, label", [
    ("good", verdict(passes=True), "good"),
    ("good", verdict(failure="test_failure"), None),
    ("wrong_expectation", verdict(failure="test_failure"), "wrong_expectation"),
    ("wrong_expectation", verdict(passes=True), None),
    ("trivial", verdict(passes=True, assertions={"count": 2, "trivial": 1, "tautological": 1}), "trivial"),
    ("trivial", verdict(passes=True, assertions={"count": 2, "trivial": 0, "tautological": 1}), None),
    ("unrelated", verdict(passes=True), "unrelated"),
    ("foreign", verdict(passes=True), "unrelated"),
    ("foreign", verdict(failure="compile"), "does_not_compile"),
    ("good", verdict(failure="compile"), "does_not_compile"),
    ("trivial", verdict(failure="crate_build"), None),
    ("good", verdict(failure="timeout"), None),
])
def test_the_label_is_what_the_evaluator_saw(intent, v, label):
    assert verified_label(sample(intent), v)[0] == label


def test_tests_that_call_the_function_are_not_unrelated():
    label, why = verified_label(sample("unrelated", "#[test]\nfn t() { assert_eq!(add(1, 1), 2); }\n"), verdict(passes=True))
    assert label is None and why == "calls the function"
    method = sample("unrelated", "#[test]\nfn t() { assert_eq!(Square { side: 2 }.area(), 4); }\n")
    method["metadata"]["function"] = "Square::area"  # a method: called as `.area()`
    assert verified_label(method, verdict(passes=True)) == (None, "calls the function")


def test_crates_split_by_name_with_the_holdout_crates_as_test():
    names = [f"crate{i}" for i in range(400)]
    got = [crate_split(n, {"crate7"}) for n in names]
    assert got[7] == "test" and got.count("test") == 1 + sum(crate_split(n, set()) == "test" for n in names if n != "crate7")
    assert 0.08 < got.count("validation") / 400 < 0.22 and 0.08 < got.count("test") / 400 < 0.22  # 15% each, by hash
    assert got == [crate_split(n, {"crate7"}) for n in names]  # stable


def record(crate: str, function: str, tests: str, tmp_path) -> dict:
    src = tmp_path / crate / "src" / "lib.rs"
    src.parent.mkdir(parents=True, exist_ok=True)
    code = f"pub fn {function}(a: u32) -> u32 {{\n    a + 1\n}}\n"
    src.write_text(code)
    return {"input": code, "output": tests, "metadata": {
        "id": f"{crate}/src/lib.rs::{function}#0", "crate": crate, "function": function, "crate_dir": str(src.parent.parent),
        "file": "src/lib.rs", "function_span": {"start_byte": 0, "end_byte": len(code)}}}


def test_candidates_carry_their_intent_and_unrelated_ones_never_call_the_function(tmp_path, monkeypatch):
    monkeypatch.setattr(critic, "MIX", dict.fromkeys(critic.MIX, 1.0))
    a = record("alpha", "inc", "#[test]\nfn t() { assert_eq!(inc(1), 2); }\n", tmp_path)
    b = record("alpha", "other", "#[test]\nfn u() { assert_eq!(other(1), 2); inc(3); }\n", tmp_path)
    c = record("alpha", "third", "#[test]\nfn v() { assert_eq!(third(1), 2); }\n", tmp_path)
    d = record("beta", "dec", "#[test]\nfn w() { assert_eq!(dec(2), 1); }\n", tmp_path)
    by_crate = {"alpha": [a, b, c], "beta": [d]}
    made = critic.candidates_for(a, by_crate, random.Random(0))
    intents = [m["metadata"]["critic"]["intent"] for m in made]
    assert intents == ["good", "wrong_expectation", "trivial", "unrelated", "foreign"]
    assert len({m["id"] for m in made}) == 5 and all(m["crate"]["file"] == "src/lib.rs" for m in made)
    assert "third(1)" in made[3]["generated_tests"]  # `other`'s tests call inc: never the unrelated choice
    assert "dec(2)" in made[4]["generated_tests"]
    assert critic_text(made[0]["function_code"], made[0]["generated_tests"]).startswith("// function under test\npub fn inc")


def test_a_corpus_without_its_splits_is_a_clear_error(tmp_path):
    assert critic.main(["--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2


@pytest.mark.slow
def test_end_to_end_on_a_real_crate_the_evaluator_labels_each_candidate(tmp_path, monkeypatch):
    """helpy (one crate, three functions) through the real in-crate evaluator: the crate's own tests are
    `good`, a changed expectation fails, trivialised tests pass with tautologies only."""
    from tests.test_corpus_in_crate import HELPY_LIB, HELPY_SHAPES
    from trainer.corpus import splits
    from trainer.corpus.build import build_corpus

    crate = tmp_path / "registry" / "helpy-0.1.0"
    for rel, text in {"Cargo.toml": '[package]\nname = "helpy"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n',
                      "src/lib.rs": HELPY_LIB, "src/shapes.rs": HELPY_SHAPES}.items():
        (crate / rel).parent.mkdir(parents=True, exist_ok=True)
        (crate / rel).write_text(text, encoding="utf-8")
    monkeypatch.setattr(splits, "HOLDOUT_PER_CATEGORY", 0)
    build_corpus(crate.parent, tmp_path / "corpus", crates="all")
    monkeypatch.setattr(critic, "MIX", {"wrong_expectation": 1.0, "trivial": 1.0, "unrelated": 0.0, "foreign": 0.0})
    report = critic.build_critic_data(tmp_path / "corpus", tmp_path / "critic", crates=5, per_crate=5, seed=0, jobs=2)
    rows = [json.loads(line) for s in critic.SPLITS for line in (tmp_path / "critic" / f"{s}.jsonl").read_text().splitlines()]
    by_intent = {(r["id"].split("::")[1], r["intent"]): r["label"] for r in rows}
    assert by_intent[("double#0~good", "good")] == "good"
    assert by_intent[("double#0~wrong_expectation", "wrong_expectation")] == "wrong_expectation"
    assert by_intent[("double#0~trivial", "trivial")] == "trivial"
    assert report["candidates"] == sum(s["rows"] for s in report["splits"].values()) + sum(report["dropped"].values())
    assert all(r["text"].startswith("// function under test\n") for r in rows)

    def no_evaluator(*args):
        raise AssertionError("every verdict should have been reused")

    again = critic.build_critic_data(tmp_path / "corpus", tmp_path / "critic", crates=5, per_crate=5, seed=0, jobs=2,
                                     evaluate=no_evaluator)
    assert again["verdicts_reused"] == again["candidates"] == report["candidates"] and again["splits"] == report["splits"]


def test_auroc_is_the_chance_a_good_row_outscores_a_bad_one():
    import numpy as np

    from trainer.critic import auroc, auroc_ci, ranking_metrics

    assert auroc(np.array([0.9, 0.8]), np.array([0.1, 0.2, 0.3])) == 1.0
    assert auroc(np.array([0.1]), np.array([0.9])) == 0.0
    assert auroc(np.array([0.5, 0.9]), np.array([0.5, 0.1])) == pytest.approx(0.875)  # one tie of four pairs counts half
    lo, hi = auroc_ci(np.array([0.9, 0.7, 0.4, 0.8]), np.array([0.2, 0.5, 0.1, 0.6]))
    assert 0 <= lo <= auroc(np.array([0.9, 0.7, 0.4, 0.8]), np.array([0.2, 0.5, 0.1, 0.6])) <= hi <= 1
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.7, 0.3]])
    m = ranking_metrics(["good", "trivial"], ["good", "good", "trivial", "trivial"], probs)
    assert m["accuracy"] == 0.75 and m["auroc_good_vs"]["trivial"]["auroc"] == 0.75 and m["confusion_matrix"] == [[2, 0], [1, 1]]
    with pytest.raises(Exception, match="not the critic's"):
        ranking_metrics(["good"], ["bad"], np.array([[1.0]]))


def test_critic_text_is_signature_then_tests_then_the_question_and_cuts_long_tests_at_a_line():
    function = '/// Adds.\n#[inline]\npub fn add<T: Copy>(a: T, b: T) -> T\nwhere\n    T: std::ops::Add<Output = T>,\n{\n    a + b\n}\n'
    text = critic_text(function, TESTS)
    assert text.startswith("// function under test\npub fn add<T: Copy>(a: T, b: T) -> T\nwhere\n    T: std::ops::Add<Output = T>,\n\n")
    assert "a + b" not in text and "Adds." not in text and "#[inline]" not in text  # no body, docs or attributes
    assert TESTS.strip() in text and text.endswith(critic.CRITIC_QUESTION)
    long_tests = "".join(f"#[test]\nfn t{i}() {{ assert_eq!(add({i}, 1), {i + 1}); }}\n" for i in range(200))
    cut = critic_text(function, long_tests)
    kept = cut.split("// tests\n", 1)[1].split("\n// ... (the rest of the tests is cut)")[0]
    assert len(kept) <= critic.CRITIC_TEST_CHARS and long_tests.startswith(kept + "\n") and cut.endswith(critic.CRITIC_QUESTION)
    assert rust_ast.signature("not rust {") == "not rust {"  # no function item: unchanged

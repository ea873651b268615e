"""In-crate evaluation (issue 14) on the fixture crate tests/data/crates/rtf-fixture (runs cargo).

One evaluation run judges every sample below together (2 jobs), as a real run would:
in-crate and standalone, features, two samples of one crate, a flaky one, the coverage gain
over the crate's own tests, and bad inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import tomlkit

from falsify.evaluate import evaluate_samples
from falsify.evaluate.crate import Workspace, cache_dir
from falsify.evaluate.crate_features import features_excluded, features_needed, predicate_features
from falsify.evaluate.crate_template import MARKER, CrateTemplates, broken_dependency, own_artifacts
from falsify.evaluate.incrate import locate, offline_features, plan_copy, switch_off_cfg_test, write_copy
from falsify.evaluate.mutation_runner import run_schema, run_separately
from falsify.evaluate.prepare import in_crate_place, prepare_in_crate
from falsify.evaluate.run import Options, claimed_uid
from falsify.evaluate.samples import CrateRef, Sample, parse_record
from falsify.evaluate.toolchain import find_toolchain
from falsify.evaluate.verdict import empty_record

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "crates" / "rtf-fixture"
DIGITS = (FIXTURE / "src" / "digits.rs").read_text()


def function(source: str, start: str, end: str) -> str:
    """The verbatim text of a function of the fixture, from `start` up to (not including) `end`."""
    i = source.index(start)
    return source[i:source.index(end, i)].rstrip()


DIGIT_COUNT = function(DIGITS, "pub fn digit_count", "pub fn digit_sum")
WIDEST = function(DIGITS, "pub fn widest", "#[cfg(not")
EXACT_HALF = "pub fn exact_half(n: u32) -> u32 {\n    n / 2\n}"
DOUBLE_FAST = (FIXTURE / "src" / "fast.rs").read_text().split("\n\n", 1)[1].rstrip()

COUNT_TESTS = """use super::*;

#[test]
fn counts_the_digits_of_a_number() {
    assert_eq!(digit_count(12345), 5);
    assert_eq!(digit_count(0), 1);
}"""

# Different tests of the same function: one passes, one fails (a wrong expectation).
COUNT_TESTS_OTHER = """use super::*;

#[test]
fn counts_one_digit_for_nine() {
    assert_eq!(digit_count(9), 1);
}

#[test]
fn expects_two_digits_for_one_hundred() {
    assert_eq!(digit_count(100), 2);
}"""

# clippy's bool_assert_comparison fires in these tests (and the crate's own code has lints of its own).
COUNT_TESTS_LINTED = """use super::*;

#[test]
fn one_digit_is_single() {
    assert_eq!(digit_count(7) == 1, true);
}"""

WIDEST_TESTS = """use super::*;

#[test]
fn picks_the_number_with_more_digits() {
    assert_eq!(widest(5, 100), 100);
}"""

FAST_TESTS = """use super::*;

#[test]
fn doubles() {
    assert_eq!(double_fast(21), 42);
}"""

# Passes when the marker is absent and leaves it behind (in the run directory, the only one it may write).
FLAKY_TESTS = """use super::*;

#[test]
fn passes_only_the_first_time() {
    let marker = std::path::Path::new("rtf-flaky-marker");
    let first_run = !marker.exists();
    std::fs::write(marker, b"ran").unwrap();
    assert!(first_run, "a marker from an earlier run is there");
    assert_eq!(digit_count(7), 1);
}"""

DIGIT_CLASS = function(DIGITS, "pub fn digit_class", "\n}\n") + "\n}"

# The crate's own test covers digit_class(7) == "single": this one adds the "multi" branch ...
CLASS_TESTS_NEW_BRANCH = """use super::*;

#[test]
fn classifies_many_digits_as_multi() {
    assert_eq!(digit_class(42), "multi");
}"""

# ... and this one only repeats what the crate's own test already covers.
CLASS_TESTS_REPEAT = """use super::*;

#[test]
fn classifies_one_digit_as_single() {
    assert_eq!(digit_class(3), "single");
}"""

STANDALONE_FLAKY = """pub fn twice(x: u32) -> u32 {
    x * 2
}"""


def in_crate(sid: str, code: str, tests: str, file: str = "src/digits.rs", crate_dir: Path = FIXTURE) -> dict:
    return {"id": sid, "function_code": code, "generated_tests": tests, "crate": {"dir": str(crate_dir), "file": file}}


@pytest.fixture(scope="module")
def broken_crates(tmp_path_factory):
    """A crate that does not build offline (a dependency not in the registry) and one whose file is a symlink out."""
    root = tmp_path_factory.mktemp("crates")
    broken = root / "broken"
    (broken / "src").mkdir(parents=True)
    (broken / "Cargo.toml").write_text('[package]\nname = "rtf-broken"\nversion = "0.1.0"\nedition = "2021"\n\n'
                                       '[dependencies]\nrtf-dependency-not-in-the-registry = "1"\n')
    (broken / "src" / "lib.rs").write_text("pub fn one() -> u8 {\n    1\n}\n")
    escape = root / "escape"
    (escape / "src").mkdir(parents=True)
    (escape / "Cargo.toml").write_text('[package]\nname = "rtf-escape"\nversion = "0.1.0"\n')
    outside = root / "outside.rs"
    outside.write_text("pub fn one() -> u8 {\n    1\n}\n")
    (escape / "src" / "lib.rs").symlink_to(outside)
    own_tests = root / "own-tests-need-dev-dep"  # its own tests use a dev-dependency the registry lacks
    (own_tests / "src").mkdir(parents=True)
    (own_tests / "Cargo.toml").write_text('[package]\nname = "rtf-own-tests"\nversion = "0.1.0"\nedition = "2021"\n\n'
                                          '[dev-dependencies]\nrtf-missing-dev-dependency = "2"\n')
    (own_tests / "src" / "lib.rs").write_text("pub fn one() -> u8 {\n    1\n}\n\n#[cfg(test)] // a test-only item the tests use\n"
                                              "pub(crate) const EXPECTED_ONE: u8 = 1;\n\n#[cfg(test)]\nmod tests {\n"
                                              "    use rtf_missing_dev_dependency::Thing;\n}\n")
    own_helper = root / "own-helper-needs-dev-dep"  # a test-only helper outside the test module uses it too
    shutil.copytree(own_tests, own_helper)
    (own_helper / "src" / "lib.rs").write_text("pub fn one() -> u8 {\n    1\n}\n\n#[cfg(test)]\n"
                                               "fn helper() -> rtf_missing_dev_dependency::Thing {\n    todo!()\n}\n")
    return broken, escape, own_tests, own_helper


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, broken_crates):
    broken, escape, own_tests, own_helper = broken_crates
    rows = [
        in_crate("in-crate", DIGIT_COUNT, COUNT_TESTS),
        {"id": "standalone", "function_code": DIGIT_COUNT, "generated_tests": COUNT_TESTS.replace("use super::*;\n", "")},
        in_crate("in-crate-other", DIGIT_COUNT, COUNT_TESTS_OTHER),
        in_crate("clippy-in-crate", DIGIT_COUNT, COUNT_TESTS_LINTED),
        in_crate("feature-all", WIDEST, WIDEST_TESTS),
        in_crate("feature-mod", DOUBLE_FAST, FAST_TESTS, file="src/fast.rs"),
        in_crate("feature-excluded", EXACT_HALF, "use super::*;\n\n#[test]\nfn halves() {\n    assert_eq!(exact_half(7), 3);\n}"),
        in_crate("flaky", DIGIT_COUNT, FLAKY_TESTS),
        in_crate("gain-new-branch", DIGIT_CLASS, CLASS_TESTS_NEW_BRANCH),
        in_crate("gain-repeat", DIGIT_CLASS, CLASS_TESTS_REPEAT),
        {"id": "flaky-standalone", "function_code": STANDALONE_FLAKY,
         "generated_tests": FLAKY_TESTS.replace("use super::*;\n", "").replace("digit_count(7), 1", "twice(2), 4")},
        in_crate("no-dir", DIGIT_COUNT, COUNT_TESTS, crate_dir=FIXTURE.parent / "no-such-crate"),
        in_crate("outside", DIGIT_COUNT, COUNT_TESTS, file="../rtf-fixture/src/digits.rs"),
        in_crate("symlink-out", "pub fn one() -> u8 {\n    1\n}", COUNT_TESTS, file="src/lib.rs", crate_dir=escape),
        in_crate("not-in-file", DIGIT_COUNT.replace("digit_count", "digit_total"), COUNT_TESTS),
        in_crate("no-offline-build", "pub fn one() -> u8 {\n    1\n}", "#[test]\nfn one_is_one() {\n    assert_eq!(one(), 1);\n}",
                 file="src/lib.rs", crate_dir=broken),
        in_crate("own-tests-switched-off", "pub fn one() -> u8 {\n    1\n}", "use super::*;\n\n#[test]\nfn one_is_one() {\n"
                 "    assert_eq!(one(), EXPECTED_ONE);\n}", file="src/lib.rs", crate_dir=own_tests),
        in_crate("own-test-code-switched-off", "pub fn one() -> u8 {\n    1\n}", "use super::*;\n\n#[test]\nfn one_is_one() {\n"
                 "    assert_eq!(one(), 1);\n}", file="src/lib.rs", crate_dir=own_helper),
        in_crate("not-in-build", "pub fn separator() -> char {\n    '\\\\'\n}", "use super::*;\n\n#[test]\n"
                 "fn separates_with_a_backslash() {\n    assert_eq!(separator(), '\\\\');\n}", file="src/platform.rs"),
        in_crate("no-offline-build-again", "pub fn one() -> u8 {\n    1\n}", "#[test]\nfn one() {\n    assert_eq!(super::one(), 1);\n}",
                 file="src/lib.rs", crate_dir=broken),
    ]
    out = tmp_path_factory.mktemp("incrate-out")
    summary = evaluate_samples(rows, out, jobs=2)
    records = {r["id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    return summary, records


@pytest.mark.slow
def test_in_crate_passes_where_the_standalone_crate_does_not_compile(evaluated):
    _, rec = evaluated
    assert rec["in-crate"]["passes"] and rec["in-crate"]["failure"] is None and rec["in-crate"]["tests_run"] == 1
    assert rec["in-crate"]["line_coverage"] == 1.0  # the function's lines are lines of src/digits.rs in the copy
    # mutated in place: the body -> 0 and -> 1
    assert rec["in-crate"]["mutation_score"] == 1.0 and rec["in-crate"]["mutants"]["killed"] == 2
    # `>=` -> `>` and -> `==` survive widest(5, 100); body -> 0, -> 1 and the other comparisons are killed
    assert rec["feature-all"]["mutants"]["survived"] == 2 and rec["feature-all"]["mutation_score"] == pytest.approx(5 / 7)
    standalone = rec["standalone"]
    assert standalone["failure"] == "compile" and standalone["crate"] is None
    assert "cannot find type `Decimal`" in standalone["reasons"][-1]  # the crate's private helper


@pytest.mark.slow
def test_only_the_generated_module_counts(evaluated):
    """src/tests.rs has a crate-own test that fails: it must neither run nor count."""
    assert "fn crate_own_test_that_fails" in (FIXTURE / "src" / "tests.rs").read_text()
    _, rec = evaluated
    module = rec["in-crate-other"]["crate"]["module"]
    assert rec["in-crate-other"]["tests_run"] == 2
    assert rec["in-crate-other"]["failing_tests"] == [f"digits::{module}::expects_two_digits_for_one_hundred"]
    assert rec["in-crate"]["failing_tests"] == [] and rec["in-crate"]["passes"]


@pytest.mark.slow
def test_clippy_counts_the_generated_module_only(evaluated):
    """clippy runs in the test build; the crate's own lints (`is_single_digit` in src/digits.rs) never count."""
    _, rec = evaluated
    assert rec["in-crate"]["clippy_warnings"] == 0
    linted = rec["clippy-in-crate"]
    assert linted["passes"] and linted["clippy_warnings"] == 1
    assert any("clippy: 1 warnings in the tests" in r and "assert_eq" in r for r in linted["reasons"])


@pytest.mark.slow
def test_a_generated_test_of_a_branch_the_crate_misses_gains_coverage(evaluated):
    r = evaluated[1]["gain-new-branch"]
    assert r["passes"] and r["function_branches"] == 2, r["reasons"]
    assert (r["branch_coverage_existing"], r["branch_coverage_with_generated"]) == (0.5, 1.0)
    assert r["branch_coverage_gain"] == 0.5
    assert r["line_coverage_existing"] < r["line_coverage_with_generated"] == 1.0 and r["line_coverage_gain"] > 0


@pytest.mark.slow
def test_a_generated_test_that_repeats_the_crate_tests_gains_nothing(evaluated):
    """Plain coverage (and the no-test delta) credits it; the gain does not: that is why the gain is the signal."""
    r = evaluated[1]["gain-repeat"]
    assert r["passes"] and r["line_coverage"] > 0 and r["branch_coverage"] == 0.5, r["reasons"]
    assert r["line_coverage"] - r["baseline_line_coverage"] > 0
    assert r["line_coverage_gain"] == 0.0 and r["branch_coverage_gain"] == 0.0
    assert r["line_coverage_with_generated"] == r["line_coverage_existing"] > 0


@pytest.mark.slow
def test_existing_coverage_does_not_depend_on_the_generated_tests(evaluated):
    """Same function, different generated tests (in other builds of the binary): the crate's own tests measure the same."""
    _, rec = evaluated
    new_branch, repeat = rec["gain-new-branch"], rec["gain-repeat"]
    assert new_branch["line_coverage_existing"] == repeat["line_coverage_existing"] < 1.0
    assert new_branch["branch_coverage_existing"] == repeat["branch_coverage_existing"] == 0.5
    # digit_count is covered by the crate's failing own test: a failing test's code still counts as executed
    assert rec["in-crate"]["line_coverage_existing"] == rec["in-crate-other"]["line_coverage_existing"] == 1.0
    assert rec["in-crate"]["line_coverage_gain"] == 0.0 and rec["in-crate"]["line_coverage"] == 1.0


@pytest.mark.slow
def test_the_summary_counts_the_samples_that_improve_coverage(evaluated):
    summary, rec = evaluated
    improved = {sid for sid, r in rec.items() if (r["line_coverage_gain"] or 0) > 0 or (r["branch_coverage_gain"] or 0) > 0}
    assert "gain-new-branch" in improved and "gain-repeat" not in improved and "in-crate" not in improved
    assert summary["coverage_improved_samples"] == len(improved) and summary["coverage_improved_rate"] == len(improved) / summary["n"]
    assert summary["line_coverage_gain"] == pytest.approx(sum(r["line_coverage_gain"] or 0 for r in rec.values()) / summary["n"])
    assert summary["line_coverage_gain"] < summary["line_coverage_delta"]  # the crate's own tests already cover much


@pytest.mark.slow
def test_what_cannot_build_offline_is_stripped_and_recorded(evaluated):
    crate = evaluated[1]["in-crate"]["crate"]
    assert crate["name"] == "rtf-fixture" and crate["version"] == "0.3.0" and crate["file"] == "src/digits.rs"
    stripped = crate["stripped"]
    assert any(s.startswith("[dev-dependencies] rtf-crate-that-does-not-exist") for s in stripped)
    assert {"[[bench]] speed", "[[example]] demo", "[[test]] integration", "benches/", "examples/", "tests/"} <= set(stripped)
    assert evaluated[1]["in-crate"]["compiles"]
    assert not any("own #[cfg(test)]" in s for s in stripped)  # its own tests (src/tests.rs) are compiled, just not run
    assert not (FIXTURE / "target").exists() and "rtf_generated" not in DIGITS  # the crate itself is never written


@pytest.mark.slow
def test_the_features_the_function_needs_are_enabled(evaluated):
    _, rec = evaluated
    # cfg(all(feature = "wide", not(...))) on the function: without it the cfg(not(wide)) twin would run and fail
    assert rec["feature-all"]["crate"]["features"][0] == "wide" and rec["feature-all"]["passes"]
    # #[cfg(feature = "fast-math")] on `pub mod fast;` in lib.rs: without it src/fast.rs is not compiled at all
    assert rec["feature-mod"]["crate"]["features"][0] == "fast-math" and rec["feature-mod"]["tests_run"] == 1
    assert rec["feature-mod"]["passes"]
    # besides those, every feature that resolves offline (the tests may use any part of the crate) ...
    assert set(rec["in-crate"]["crate"]["features"]) == {"default", "fast-math", "wide"}
    # ... except one whose not(...) guards the function: with it on, the function would not exist
    assert set(rec["feature-excluded"]["crate"]["features"]) == {"default", "wide"} and rec["feature-excluded"]["passes"]


@pytest.mark.slow
def test_two_samples_of_one_crate_each_see_their_own_tests(evaluated):
    """Copies of one crate share a template: each must still build and run its own module (the mtime trap)."""
    _, rec = evaluated
    one, other = rec["in-crate"], rec["in-crate-other"]
    assert one["crate"]["module"] != other["crate"]["module"]
    assert (one["tests_run"], one["passes"]) == (1, True)
    assert (other["tests_run"], other["failure"]) == (2, "test_failure")
    assert one["crate"]["dependencies_compiled"] == other["crate"]["dependencies_compiled"] == ["rtf_fixture"]


@pytest.mark.slow
def test_the_dependency_template_is_reused_and_read_only(evaluated):
    _, rec = evaluated
    same_template = [rec[k] for k in ("in-crate", "in-crate-other", "flaky")]
    for r in same_template:  # cargo's JSON: itoa was `fresh`, only the crate itself was compiled
        assert r["crate"]["dependencies_fresh"] == ["itoa"], r["crate"]
        assert r["crate"]["dependencies_compiled"] == ["rtf_fixture"]
    assert [r["crate"]["template"] for r in same_template].count("built") <= 1
    templates = [p for p in (cache_dir() / "crates").glob("rtf-fixture-0.3.0-*") if (p / MARKER).is_file()]
    assert templates and any("itoa" in json.loads((p / MARKER).read_text())["compiled"] for p in templates)
    for top in templates:  # not writable by any sandbox uid: root's, no group or other write bit
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                st = os.lstat(Path(dirpath) / name)
                assert st.st_uid == 0 and not st.st_mode & 0o022, Path(dirpath) / name


@pytest.mark.slow
def test_a_test_that_passes_only_once_is_flaky_in_both_modes(evaluated):
    summary, rec = evaluated
    for sid in ("flaky", "flaky-standalone"):
        r = rec[sid]
        assert r["failure"] == "flaky" and not r["passes"], r["reasons"]
        assert (r["runs"], r["runs_passed"]) == (3, 1)
        assert any(reason.startswith("flaky: run 2 of 3 failed: failing tests:") for reason in r["reasons"])
    assert (rec["in-crate"]["runs"], rec["in-crate"]["runs_passed"]) == (3, 3)
    assert summary["flaky_samples"] == 2 and summary["test_runs"] == 3
    passing = sum(r["passes"] for r in rec.values())
    assert summary["flaky_rate"] == pytest.approx(2 / (2 + passing))


@pytest.mark.slow
def test_bad_inputs_are_one_line_problems_and_the_run_goes_on(evaluated):
    summary, rec = evaluated
    expected = {"no-dir": ("input", "crate directory", "crate.dir"),
                "outside": ("input", "is outside the crate", "crate.file"),
                "symlink-out": ("input", "through a symlink", "crate.file"),
                "not-in-file": ("input", "does not appear verbatim in 'src/digits.rs'", "function_code"),
                "no-offline-build": ("crate_build", "rtf-dependency-not-in-the-registry", "rtf-broken 0.1.0"),
                "no-offline-build-again": ("crate_build", "rtf-dependency-not-in-the-registry", "rtf-broken 0.1.0")}
    for sid, (kind, says, names) in expected.items():
        r = rec[sid]
        assert r["failure"] == kind and len(r["reasons"]) == 1, r["reasons"]
        assert "\n" not in r["reasons"][0] and says in r["reasons"][0] and names in r["reasons"][0]
        if kind == "input":
            assert f"sample '{sid}'" in r["reasons"][0]
    assert summary["n"] == 20 and summary["failures_by_reason"]["crate_build"] == 2
    # ... and remembered in the cache for the next run (while the registry stays as it is)
    remembered = list((cache_dir() / "crates").glob("rtf-broken-0.1.0-*.failed"))
    assert remembered and "rtf-dependency-not-in-the-registry" in remembered[0].read_text()
    assert rec["in-crate"]["passes"] and summary["in_crate_samples"] == 14  # the 4 input problems were never located


@pytest.mark.slow
def test_a_file_that_this_platform_does_not_build_is_not_judged(evaluated):
    """src/platform.rs is `#[cfg(windows)]`: no test can run, and that is not the tests' fault (tokio's windows files)."""
    summary, rec = evaluated
    r = rec["not-in-build"]
    assert r["failure"] == "not_in_build" and r["compiles"] and r["tests_run"] == 0 and not r["passes"]
    assert len(r["reasons"]) == 1 and "rustc did not read src/platform.rs" in r["reasons"][0]
    assert summary["failures_by_reason"]["not_in_build"] == 1
    assert summary["offline_limited_samples"] == 3  # with the two crate_build samples
    assert rec["in-crate"]["failure"] is None  # a file in the build is judged as before


@pytest.mark.slow
def test_own_tests_that_need_a_stripped_dev_dependency_are_switched_off(evaluated):
    """Their test module cannot compile once the dev-dependency is gone: the copy is retried without it,
    keeping the test-only const the generated tests use; where a kept test-only helper needs the dev-dependency
    too, every cfg(test) of the crate goes."""
    r = evaluated[1]["own-tests-switched-off"]
    assert r["passes"] and r["tests_run"] == 1, r["reasons"]
    note = "the crate's own test modules and functions (1 attributes, `test` made false): it needs stripped dev-dependencies"
    assert note in r["crate"]["stripped"]
    r = evaluated[1]["own-test-code-switched-off"]
    assert r["passes"] and r["tests_run"] == 1, r["reasons"]
    note = "the crate's own test-only code (1 attributes, `test` made false): it needs stripped dev-dependencies"
    assert note in r["crate"]["stripped"]


def test_switching_off_test_only_code_reads_cfg_as_if_not_testing():
    """Every cfg form that names `test` is rewritten, nothing else: strings and other names stay."""
    source = ('#[cfg(test)]\nmod t;\n#[cfg(all(test, feature = "test"))]\nfn a() {}\n#[cfg(not(test))]\nfn b() {}\n'
              '#[cfg_attr(test, derive(Debug))]\nstruct S;\n#[cfg(testing)]\nfn c() {}\n#[inline]\nfn d() {}\n')
    text, count = switch_off_cfg_test(source)
    assert count == 4
    assert text == ('#[cfg(any())]\nmod t;\n#[cfg(all(any(), feature = "test"))]\nfn a() {}\n#[cfg(not(any()))]\nfn b() {}\n'
                    '#[cfg_attr(any(), derive(Debug))]\nstruct S;\n#[cfg(testing)]\nfn c() {}\n#[inline]\nfn d() {}\n')


def test_switching_off_test_only_code_removes_test_functions_outside_test_modules():
    """A module-level #[test] fn is compiled by `cargo test` and uses the cfg(test) items switched off with it
    (chrono 0.4.23's naive/date.rs): it goes too, whatever path its test attribute has."""
    source = ('#[cfg(test)]\nconst MAX: u8 = 4;\n#[test]\nfn bound() { assert!(MAX > 1); }\n'
              '#[tokio::test]\nasync fn t() {}\n#[crate::test]\nasync fn u() {}\n#[testing]\nfn v() {}\n')
    text, count = switch_off_cfg_test(source)
    assert count == 4
    assert text == ('#[cfg(any())]\nconst MAX: u8 = 4;\n#[cfg(any())]\nfn bound() { assert!(MAX > 1); }\n'
                    '#[cfg(any())]\nasync fn t() {}\n#[cfg(any())]\nasync fn u() {}\n#[testing]\nfn v() {}\n')


def test_a_crate_cfg_macro_counts_as_the_cfg_it_writes(tmp_path):
    """tokio's way: `cfg_fs! { pub mod fs; }` in lib.rs, where `macro_rules! cfg_fs` puts `#[cfg(feature = "fs")]` on
    each item; and `cfg_rt! { impl ... }` around the function itself. Without reading them, the file is not compiled."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lib.rs").write_text(
        'macro_rules! cfg_fs {\n    ($($item:item)*) => { $( #[cfg(feature = "fs")] $item )* }\n}\n'
        'macro_rules! cfg_rt {\n    ($($item:item)*) => { $( #[cfg(all(feature = "rt", not(loom)))] $item )* }\n}\n'
        'macro_rules! cfg_not_fs {\n    ($($item:item)*) => { $( #[cfg(not(feature = "fs"))] $item )* }\n}\n'
        "cfg_fs! {\n    pub mod fs;\n}\n")
    source = "cfg_rt! {\n    impl File {\n        pub fn sync(&self) {}\n    }\n}\ncfg_not_fs! {\n    pub fn slow() {}\n}\n"
    (tmp_path / "src" / "fs.rs").write_text(source)
    at = source.index("pub fn sync")
    assert features_needed(tmp_path, "src/lib.rs", "src/fs.rs", at, at + len("pub fn sync(&self) {}")) == ["rt", "fs"]
    at = source.index("pub fn slow")
    assert features_needed(tmp_path, "src/lib.rs", "src/fs.rs", at, at + len("pub fn slow() {}")) == ["fs"]


def test_a_feature_under_not_that_guards_the_function_is_excluded(tmp_path):
    (tmp_path / "src").mkdir()
    source = '#[cfg(all(feature = "alloc", not(feature = "std")))]\npub fn bare() {}\n#[cfg(feature = "std")]\npub fn full() {}\n'
    (tmp_path / "src" / "lib.rs").write_text(source)
    assert features_excluded(tmp_path, "src/lib.rs", source.index("pub fn bare"), source.index("pub fn bare") + 16) == ["std"]
    assert features_excluded(tmp_path, "src/lib.rs", source.index("pub fn full"), source.index("pub fn full") + 16) == []


def test_offline_features_leave_out_what_cannot_resolve_or_is_excluded():
    """All features, offline: minus one whose optional dependency the registry lacks (or that does not compile here),
    minus an excluded one, and minus every feature that enables a left-out one."""
    doc = tomlkit.parse('[package]\nname = "c"\n[dependencies]\nitoa = { version = "1", optional = true }\n'
                        'rtf-nowhere = { version = "9", optional = true }\n'
                        '[features]\ndefault = ["fast"]\nfast = []\nfull = ["fast", "dep:itoa"]\nremote = ["rtf-nowhere"]\n')
    assert offline_features(doc) == ("default", "fast", "full")
    assert offline_features(doc, without=frozenset({"itoa"})) == ("default", "fast")
    assert offline_features(doc, excluded=frozenset({"fast"})) == ()


def test_a_template_error_in_a_registry_crate_names_that_dependency():
    assert broken_dependency("... at /usr/share/cargo/registry/rustc-serialize-0.3.24/src/serialize.rs:1155") == "rustc-serialize"
    assert broken_dependency("cannot find value `MAX_BITS` in this scope at src/naive/date.rs:228") is None


def test_crate_field_shape_is_checked_when_read():
    base = {"id": "s", "function_code": "fn f() {}", "generated_tests": "#[test]\nfn t() {}"}
    assert parse_record(base, 1).crate is None
    assert parse_record({**base, "crate": {"dir": "/c", "file": "src/a.rs"}}, 1).crate.file == "src/a.rs"
    for bad, says in [("x", "must be an object"), ({"dir": "/c"}, "'crate.file'"), ({"dir": "/c", "file": "a.txt"}, "Rust file"),
                      ({"dir": "/c", "file": "src/a.rs", "path": 1}, "unknown keys")]:
        problem = parse_record({**base, "crate": bad}, 3).problem
        assert problem.startswith("line 3: sample 's': ") and says in problem


def test_cfg_predicates_name_the_features_that_make_them_true():
    assert predicate_features('feature = "x"') == ["x"]
    assert predicate_features('all(feature = "a", unix, feature = "b")') == ["a", "b"]
    assert predicate_features('any(unix, feature = "a", feature = "b")') == ["a"]
    assert predicate_features('not(feature = "a")') == [] and predicate_features("test") == []


def test_reruns_below_one_is_exit_2(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"id": "a", "function_code": "fn f() {}", "generated_tests": "#[test]\nfn t() {}"}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "falsify.evaluate", "--samples", str(samples), "--out", str(tmp_path),
                           "--reruns", "0"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "--reruns must be at least 1" in proc.stderr


def test_the_copy_has_fresh_mtimes_and_leaves_out_what_is_stripped(tmp_path):
    """copy2 would keep the crate's old mtimes, and cargo would take another copy's build for this one's."""
    sample = Sample("fresh", 1, DIGIT_COUNT, COUNT_TESTS, crate=CrateRef(str(FIXTURE), "src/digits.rs"))
    old = 1_000_000_000  # 2001: as old as a file unpacked from a package
    source = tmp_path / "crate"
    shutil.copytree(FIXTURE, source)
    for path in source.rglob("*"):
        os.utime(path, (old, old))
    sample.crate = CrateRef(str(source), "src/digits.rs")
    copy = plan_copy(sample, *locate(sample))
    write_copy(copy, tmp_path / "copy", with_tests=True)
    files = [p for p in (tmp_path / "copy").rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mtime > old + 1 for p in files)
    assert not any((tmp_path / "copy" / d).exists() for d in ("benches", "examples", "tests", "target"))
    assert f"mod {copy.module} {{" in (tmp_path / "copy" / "src" / "digits.rs").read_text()
    assert "[workspace]" in (tmp_path / "copy" / "Cargo.toml").read_text()


def test_the_crates_own_artifacts_are_never_linked_from_the_template():
    copy = plan_copy(Sample("a", 1, DIGIT_COUNT, COUNT_TESTS, crate=CrateRef(str(FIXTURE), "src/digits.rs")),
                     FIXTURE, "src/digits.rs")
    own = own_artifacts(copy)
    for name in ("rtf-fixture-0123456789abcdef", "rtf_fixture-0123456789abcdef", "librtf_fixture-0123456789abcdef.rlib",
                 "rtf_fixture-0123456789abcdef.d"):
        assert own(Path("debug/deps") / name), name
    assert not own(Path("debug/deps/libitoa-0123456789abcdef.rlib")) and not own(Path("debug/.fingerprint/itoa-0123456789abcdef"))


DIGIT_SUM = function(DIGITS, "pub fn digit_sum", "#[cfg(all")
IN_PLACE = {"digit_sum": (DIGIT_SUM, "use super::*;\n\n#[test]\nfn sums_the_digits() {\n    assert_eq!(digit_sum(123), 6);\n}"),
            "widest": (WIDEST, WIDEST_TESTS)}


@pytest.fixture(scope="module")
def in_place_workspace():
    ws = Workspace(find_toolchain(), cargo_jobs=os.cpu_count() or 1)
    root = Path(tempfile.mkdtemp(prefix="rtf-incrate-equiv-"))
    os.chmod(root, 0o711)  # the sandbox uid must reach its directories below
    with claimed_uid() as uid:
        yield ws, CrateTemplates(ws, root / "staging", coverage=False), root, uid
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IN_PLACE))
def test_in_place_schema_verdicts_equal_one_build_per_mutant(in_place_workspace, name):
    """Mutants switched in inside the crate file give the verdicts of one build per mutant, counting only the module's tests."""
    ws, templates, root, uid = in_place_workspace
    code, tests = IN_PLACE[name]
    sample = Sample(name, 1, code, tests, crate=CrateRef(str(FIXTURE), "src/digits.rs"))
    places = {}
    for kind in ("schema", "plain"):
        prepared = prepare_in_crate(ws, templates, sample, empty_record(name, 1), root / f"{name}-{kind}", uid)
        places[kind] = in_crate_place(prepared.copy, root / f"{name}-{kind}")
    limits = Options(test_timeout=20).test_limits
    schema = run_schema(ws, root / f"{name}-schema", code, tests, uid=uid, limits=limits, original_seconds=0.5,
                        place=places["schema"])
    plain = run_separately(ws, root / f"{name}-plain", code, tests, uid=uid, limits=limits, original_seconds=0.5,
                           place=places["plain"])
    assert schema.ran, schema.reason
    assert schema.verdicts == plain.verdicts and len(schema.verdicts) >= 2
    assert plain.builds == len(plain.verdicts) and schema.builds == 1
    assert "killed" in schema.verdicts.values()
    if name == "widest":  # `>=` -> `>` is equivalent here; the crate's own failing test would have "killed" it
        assert "survived" in schema.verdicts.values()

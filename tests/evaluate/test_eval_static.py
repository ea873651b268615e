"""Fast checks of the evaluator's pure parts: input reading, mutants, assertions, CodeBLEU, summary."""

from __future__ import annotations

import json

import pytest
from eval_cases import CLAMP, CLAMP_AS_MODULE, CLAMP_GOOD, CLAMP_WEAK, SIGN, SUM_EVEN

from falsify.evaluate import assertions, codebleu, coverage, mutation_operators
from falsify.evaluate.crate import assemble
from falsify.evaluate.forbidden import refusal
from falsify.evaluate.samples import InputProblem, Sample, from_dicts, read_samples
from falsify.evaluate.summary import SUMMARY_FIELDS, Summary, summarize
from falsify.evaluate.verdict import SampleRecord, empty_record


def test_bad_lines_become_problems_with_line_numbers(tmp_path):
    good = {"id": "a", "function_code": CLAMP, "generated_tests": CLAMP_GOOD}
    path = tmp_path / "s.jsonl"
    with open(path, "wb") as fh:
        fh.write((json.dumps(good) + "\n").encode())
        fh.write(b"{not json\n")
        fh.write(b"\n")
        fh.write((json.dumps({"id": "b", "function_code": CLAMP}) + "\n").encode())
        fh.write((json.dumps({"id": "c", "function_code": CLAMP, "generated_tests": "  \n"}) + "\n").encode())
        fh.write(b'{"id": "d\xff", "function_code": "x", "generated_tests": "y"}\n')
        fh.write((json.dumps(good) + "\n").encode())
        fh.write(b"[1, 2]\n")
        fh.write((json.dumps({"id": "e", "function_code": CLAMP, "generated_tests": 3}) + "\n").encode())
    items = read_samples(path)
    assert isinstance(items[0], Sample) and items[0].line == 1
    problems = [i for i in items if isinstance(i, InputProblem)]
    assert [p.line for p in problems] == [2, 4, 5, 6, 7, 8, 9]
    text = " | ".join(p.problem for p in problems)
    for expected in ("line 2: malformed JSON", "line 4: missing field 'generated_tests'", "line 5: field 'generated_tests' is empty",
                     "line 6: not UTF-8", "line 7: duplicate id 'a'", "line 8: expected a JSON object",
                     "line 9: field 'generated_tests' must be a string"):
        assert expected in text


def test_tests_are_wrapped_unless_already_a_module():
    wrapped = assemble(CLAMP, CLAMP_WEAK)
    assert "mod tests {\n    use super::*;" in wrapped.source and wrapped.function_lines == (1, 9)
    kept = assemble(CLAMP, CLAMP_AS_MODULE)
    assert kept.source.count("mod tests") == 1
    start, end = kept.tests_bytes
    assert kept.source.encode()[start:end].decode().startswith("#[cfg(test)]")


@pytest.mark.parametrize("code", ['const S: &str = include_str!("/etc/passwd");', "#[path = \"/etc/x.rs\"] mod x;",
                                  "mod other;", "fn f() { let b = include_bytes!(\"/dev/zero\"); }"])
def test_compile_time_file_access_is_refused(code):
    assert refusal(code).startswith("forbidden_construct:")


def test_plain_code_is_not_refused():
    assert refusal(CLAMP_GOOD) is None


def test_mutation_operators_found():
    sign_mutants = mutation_operators.find_mutants(SIGN)
    ops = [m.operator for m in sign_mutants]
    assert ops.count("body_value") == 3  # 0, 1, -1 for an i64
    assert {"guard_true", "guard_false", "arm_delete", "binary_swap", "unary_delete"} <= set(ops)
    # the wildcard arm itself is never deleted
    assert all("_ =>" not in SIGN.encode()[m.start:m.end].decode() for m in sign_mutants if m.operator == "arm_delete")
    ops = [m.operator for m in mutation_operators.find_mutants(SUM_EVEN)]
    assert {"compound_swap", "unary_delete", "binary_swap"} <= set(ops)


def test_const_fn_is_not_mutated_and_says_why():
    sites, notes = mutation_operators.find_sites("const fn double(x: u32) -> u32 { x * 2 }")
    assert sites == [] and "const fn double" in notes[0]


def test_single_mutant_applies_one_change_and_diffs():
    m = next(m for m in mutation_operators.find_mutants(CLAMP) if m.operator == "binary_swap" and m.replacement == "<=")
    mutated = m.apply(CLAMP)
    assert mutated.count("<=") == 1 and mutated.replace("<=", "<", 1) == CLAMP
    assert "-    if x < lo {" in m.diff(CLAMP) and "+    if x <= lo {" in m.diff(CLAMP)


def test_schema_switches_every_mutant_and_markers_nest():
    schema = mutation_operators.render_schema(SUM_EVEN)
    ids = [m.id for m in mutation_operators.find_mutants(SUM_EVEN)]
    for k in ids:
        assert (f"__rtf_mutant() == {k} " in schema or f"__rtf_mutant() != {k}" in schema
                or f"/*<{k}*/{k} => " in schema or f"/*<{k}*/_ => " in schema)
    intervals = mutation_operators.marker_intervals(schema)
    assert sorted({k for _, _, k in intervals}) == sorted(ids)
    # an offset inside the inner `% 2` swap belongs to it, not to the enclosing `&&`
    inner = next(m.id for m in mutation_operators.find_mutants(SUM_EVEN) if SUM_EVEN[m.start:m.end] == "==")
    pos = schema.index(f"/*<{inner}*/{inner} => {{") + len(f"/*<{inner}*/{inner} => {{")
    assert mutation_operators.innermost_mutant(intervals, pos) == inner
    # dropping a mutant removes its switch
    assert f"/*<{inner}*/" not in mutation_operators.render_schema(SUM_EVEN, set(ids) - {inner})


def test_schema_size_grows_linearly_with_nesting():
    # each `+` site writes its operands once per alternative (`-`, `*`) besides the original: 3 copies, never 2^depth
    code = "pub fn f(a: i32) -> i32 { " + " + ".join(["a"] * 40) + " }"
    assert len(mutation_operators.render_schema(code)) < 100 * len(code)


def test_assertion_analysis():
    facts = assertions.analyse(CLAMP_WEAK, CLAMP)
    assert facts.assertions == {"count": 2, "trivial": 1, "tautological": 1, "cannot_fail": 0, "uses_function_result": 0}
    assert facts.test_names == {"count": 1, "descriptive": 0, "names": ["test_1"]}
    good = assertions.analyse(CLAMP_GOOD, CLAMP)
    assert good.assertions["count"] == 4 and good.assertions["uses_function_result"] == 4
    assert good.assertions["trivial"] == good.assertions["tautological"] == 0
    assert good.has_comments and good.proptest_strategies == ["any::<i32>()"]
    assert good.test_names["descriptive"] == 4


def test_bleu_and_codebleu():
    assert codebleu.bleu4(CLAMP_GOOD, CLAMP_GOOD) == pytest.approx(1.0)
    score, parts = codebleu.codebleu(CLAMP_WEAK, CLAMP_GOOD)
    assert 0 < score < 0.5 and parts["ngram"] < 0.2
    # a reference without dataflow: the component is left out, never scored as full marks
    score, parts = codebleu.codebleu("fn t() { assert!(g(1)); }", "fn t() { assert!(f(1)); }")
    assert parts["dataflow"] is None
    assert score == pytest.approx((parts["ngram"] + parts["weighted_ngram"] + parts["syntax"]) / 3)
    ref = "fn t() { let a = f(1); let b = a + 1; assert_eq!(b, 2); }"
    assert codebleu.dataflow_match("fn t() { let x = f(1); let y = x + 1; }", ref) == 1.0
    assert codebleu.dataflow_match("fn t() { assert_eq!(f(1), 1); }", ref) == 0.0


def test_lcov_is_restricted_to_the_function_lines():
    lcov = "SF:/x/src/lib.rs\nDA:1,1\nDA:2,0\nDA:3,4\nDA:20,1\nBRDA:2,0,0,1\nBRDA:2,0,1,-\nBRDA:20,0,0,1\nend_of_record\n"
    c = coverage.parse_lcov(lcov, "src/lib.rs", (1, 9))
    assert (c.lines_total, c.lines_hit, c.branches_total, c.branches_hit) == (3, 2, 2, 1)
    assert coverage.has_branch_points(CLAMP) and not coverage.has_branch_points("fn f(a: u8) -> u8 { a + 1 }")


def test_summary_counts_every_sample_and_failure():
    ok = empty_record("a", 1) | {"parses": True, "compiles": True, "links": True, "passes": True, "mutation_score": 0.5,
                                  "mutants": {"killed": 1, "survived": 1, "timeout": 0, "unviable": 2, "survivors": ["d"]},
                                  "line_coverage": 1.0, "baseline_line_coverage": 0.0, "function_branches": 0, "seconds": 2.0}
    bad = empty_record("b", 2) | {"failure": "input", "seconds": 0.0}
    s = summarize([ok, bad], wall_seconds=2.5, jobs=2, toolchain="rustc test")
    assert s["n"] == 2 and s["failures"] == 1 and s["pass_rate"] == 0.5 and s["compile_rate"] == 0.5
    assert s["mutation_score"] == 0.5 and s["mutation_samples_run"] == 1 and s["mutants"]["unviable"] == 2
    assert s["line_coverage_delta"] == 0.5  # the unmeasured sample gained nothing
    assert s["branch_coverage_delta"] == 0.0  # only `bad` counts: `ok`'s function has no branch
    assert s["failures_by_reason"] == {"input": 1}


def test_summary_gain_counts_unmeasured_samples_as_zero_and_improved_samples_over_n():
    def rec(sid: str, **fields) -> SampleRecord:
        return empty_record(sid, 1) | {"line_coverage": 1.0, "baseline_line_coverage": 0.0, **fields}
    records = [rec("adds-a-branch", line_coverage_gain=0.0, branch_coverage_gain=0.5, function_branches=2),
               rec("adds-lines", line_coverage_gain=0.25, function_branches=0),
               rec("repeats", line_coverage_gain=0.0, branch_coverage_gain=0.0, function_branches=2),
               empty_record("unmeasured", 4)]
    s = summarize(records, wall_seconds=1.0, jobs=1, toolchain="rustc test")
    assert s["line_coverage_gain"] == 0.25 / 4 and s["line_coverage_delta"] == 3 / 4
    assert s["branch_coverage_gain"] == 0.5 / 3  # `adds-lines` has no branch; `unmeasured` counts as 0
    assert s["coverage_improved_samples"] == 2 and s["coverage_improved_rate"] == 0.5


def test_records_and_summaries_carry_exactly_their_declared_fields():
    rec = empty_record("a", 1)
    assert list(rec) == list(SampleRecord.__annotations__)
    summary = summarize([rec], wall_seconds=0.0, jobs=1, toolchain="rustc test")
    assert set(summary) == set(Summary.__annotations__) and set(SUMMARY_FIELDS) < set(summary)


def test_dicts_are_validated_like_file_lines(tmp_path):
    rows = [{"id": "a", "function_code": CLAMP, "generated_tests": CLAMP_GOOD}, [1], {"id": "a", "function_code": CLAMP,
            "generated_tests": CLAMP_WEAK}, {"id": "b", "function_code": CLAMP}]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert from_dicts(rows) == read_samples(path)
    assert [type(i).__name__ for i in from_dicts(rows)] == ["Sample", "InputProblem", "InputProblem", "InputProblem"]


def _failed_build(*rendered: str):
    from falsify.evaluate.crate import BuildResult, Diagnostic
    from falsify.evaluate.sandbox import RunResult
    return BuildResult(RunResult(101, "", "", False, False, 1.0), False, None,
                       [Diagnostic("error", r.splitlines()[0], r, "E0433") for r in rendered])


def test_a_compile_failure_on_a_crate_this_machine_lacks_is_told_apart():
    """loom, or a dev-dependency stripped offline: the code may be right, this build cannot link it. Only when that is
    the first error: an error of the code's own comes first otherwise."""
    from falsify.evaluate.verdict import unavailable_crates
    loom = "error[E0433]: cannot find module or crate `loom` in this scope\n  use of unresolved module or unlinked crate `loom`"
    nix = "error[E0432]: unresolved import `nix`\n  use of unresolved module or unlinked crate `nix`"
    typo = "error[E0425]: cannot find function `clamp2` in this scope"
    assert unavailable_crates(_failed_build(loom, nix, loom)) == ["loom", "nix"]
    assert unavailable_crates(_failed_build(typo, loom)) == []


def test_the_judged_pass_rate_leaves_out_what_this_machine_cannot_judge():
    recs = [empty_record(f"s{i}", i) for i in range(4)]
    recs[0] |= {"compiles": True, "passes": True}
    recs[1] |= {"failure": "crate_build"}
    recs[2] |= {"failure": "compile", "unavailable_crates": ["loom"]}
    recs[3] |= {"failure": "compile"}
    summary = summarize(recs, wall_seconds=1.0, jobs=1, toolchain="rustc")
    assert summary["pass_rate"] == 0.25 and summary["offline_limited_samples"] == 2 and summary["judged_pass_rate"] == 0.5

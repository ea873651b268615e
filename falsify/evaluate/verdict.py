"""The per-sample record (samples.jsonl): its schema and the code that fills it, one recorder per stage.

Field names are a contract: other tools read them, README documents each. A sample that
could not be evaluated (bad input line, refused code) still gets a full record, with
`failure` set, so the summary's denominators always count every input line. Each stage
of run.py hands its outcome to one `record_*` function here, which turns it into fields,
a failure kind and reasons.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, TypedDict

from trainer.corpus import rust_ast
from trainer.corpus.rust_ast import CATEGORIES

from . import assertions, codebleu

if TYPE_CHECKING:
    from .coverage import FunctionCoverage
    from .crate import BuildResult
    from .libtest import LibtestReport
    from .mutation_runner import MutationResult
    from .samples import Sample
    from .sandbox import Limits, RunResult

SAMPLES_FILE = "samples.jsonl"  # the evaluator's output directory: one record per input line

FailureKind = Literal["input", "forbidden_construct", "crate_build", "not_in_build", "parse", "compile", "no_tests",
                      "test_failure", "harness_bypassed", "flaky", "timeout", "output", "disk_limit", "internal"]


class MutantCounts(TypedDict):
    killed: int
    survived: int
    timeout: int
    unviable: int
    survivors: list[str]         # unified diffs of the function against each surviving mutant


class AssertionCounts(TypedDict):
    count: int
    trivial: int
    tautological: int
    cannot_fail: int             # assertions whose panic is swallowed + #[should_panic] tests that panic on their own
    uses_function_result: int


class TestNameCounts(TypedDict):
    count: int
    descriptive: int


class CrateFacts(TypedDict, total=False):
    """An in-crate sample's crate (README, "In-crate samples"): what was built and what had to be left out."""

    name: str
    version: str
    dir: str
    file: str
    module: str                  # rtf_generated_<hash>: the module the generated tests became
    features: list[str]          # enabled because the function needs them
    stripped: list[str]          # left out to build offline, in words
    template: str                # "built" (this sample compiled the dependencies) or "reused"
    template_seconds: float      # the template build's wall time, when this sample built it
    dependencies_fresh: list[str]     # units cargo reused from the template in this sample's build
    dependencies_compiled: list[str]  # units this sample's build compiled (the crate itself)


class SampleRecord(TypedDict):
    """One line of samples.jsonl (README, "samples.jsonl", says what each field means)."""

    id: str
    line: int
    parses: bool
    compiles: bool
    links: bool
    passes: bool
    failure: FailureKind | None
    unavailable_crates: list[str]  # a compile failure whose first error is a crate this offline build lacks
    crate: CrateFacts | None     # null for a standalone sample
    tests_run: int
    failing_tests: list[str]
    runs: int                    # test runs (the first, plus the reruns of a passing sample)
    runs_passed: int
    clippy_warnings: int | None
    mutation_score: float | None
    mutants: MutantCounts
    line_coverage: float | None
    branch_coverage: float | None
    baseline_line_coverage: float | None
    baseline_branch_coverage: float | None
    line_coverage_existing: float | None         # by the crate's existing tests alone (standalone: the baseline)
    branch_coverage_existing: float | None
    line_coverage_with_generated: float | None   # by the existing tests and the generated ones together
    branch_coverage_with_generated: float | None
    line_coverage_gain: float | None             # with_generated - existing: what the generated tests add
    branch_coverage_gain: float | None
    function_lines: int | None
    function_branches: int | None
    assertions: AssertionCounts
    bleu4: float | None
    codebleu: float | None
    codebleu_components: dict[str, float | None] | None
    categories: dict[str, bool]
    test_names: TestNameCounts
    has_comments: bool
    proptest_strategies: list[str]
    edge_cases: list[str]
    seconds: float
    timings: dict[str, float]    # seconds per stage: build, test, coverage, clippy, mutation
    reasons: list[str]


def empty_record(sample_id: str, line: int) -> SampleRecord:
    return {
        "id": sample_id, "line": line,
        "parses": False, "compiles": False, "links": False, "passes": False,
        "failure": None,
        "unavailable_crates": [],
        "crate": None,
        "tests_run": 0, "failing_tests": [],
        "runs": 0, "runs_passed": 0,
        "clippy_warnings": None,
        "mutation_score": None,
        "mutants": {"killed": 0, "survived": 0, "timeout": 0, "unviable": 0, "survivors": []},
        "line_coverage": None, "branch_coverage": None,
        "baseline_line_coverage": None, "baseline_branch_coverage": None,
        "line_coverage_existing": None, "branch_coverage_existing": None,
        "line_coverage_with_generated": None, "branch_coverage_with_generated": None,
        "line_coverage_gain": None, "branch_coverage_gain": None,
        "function_lines": None, "function_branches": None,
        "assertions": {"count": 0, "trivial": 0, "tautological": 0, "cannot_fail": 0, "uses_function_result": 0},
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


@contextmanager
def timed(rec: SampleRecord, stage: str) -> Iterator[None]:
    """Record the wall time of the `with` block as `timings[stage]`."""
    start = time.monotonic()
    yield
    rec["timings"][stage] = round(time.monotonic() - start, 3)


# ---- one recorder per stage ------------------------------------------------------------------
def record_input_problem(rec: SampleRecord, problem: str) -> None:
    rec["failure"] = "input"
    rec["reasons"].append("input problem: " + problem)


def record_internal_error(rec: SampleRecord, error: str) -> None:
    """A harness bug shows in the verdict (keeping the failure a stage already found)."""
    rec["failure"] = rec["failure"] or "internal"
    rec["reasons"].append("internal error: " + error)


def record_static_analysis(rec: SampleRecord, sample: Sample) -> assertions.TestFacts:
    """What the code says before anything runs: categories, assertions, names, similarity to the reference."""
    rec["categories"] = rust_ast.function_categories(sample.function_code)
    facts = assertions.analyse(sample.generated_tests, sample.function_code)
    counts = facts.assertions
    rec["assertions"] = counts
    rec["test_names"] = {"count": facts.test_names["count"], "descriptive": facts.test_names["descriptive"]}
    rec["has_comments"] = facts.has_comments
    rec["proptest_strategies"] = facts.proptest_strategies
    rec["edge_cases"] = facts.edge_cases
    if counts["count"] == 0:
        rec["reasons"].append("weak tests: no assertion")
    if counts["trivial"] or counts["tautological"]:
        rec["reasons"].append(f"weak tests: {counts['trivial']} trivial and {counts['tautological']} tautological assertions")
    rec["reasons"] += [f"weak tests: cannot fail: {note}" for note in facts.cannot_fail]
    if sample.reference_tests:
        rec["bleu4"] = codebleu.bleu4(sample.generated_tests, sample.reference_tests)
        rec["codebleu"], rec["codebleu_components"] = codebleu.codebleu(sample.generated_tests, sample.reference_tests)
    return facts


def record_crate_build(rec: SampleRecord, problem: str) -> None:
    """The crate itself, without the sample's tests, does not build offline: nothing of the sample was judged."""
    rec["failure"] = "crate_build"
    rec["reasons"].append("crate build: " + problem)


def record_parse(rec: SampleRecord, rustfmt: RunResult, syntax_error: str | None, limits: Limits) -> bool:
    """rustfmt's verdict on the assembled crate; `syntax_error` is where tree-sitter stumbled, if it did."""
    rec["parses"] = rustfmt.returncode == 0
    if not rec["parses"]:
        rec["failure"] = "timeout" if rustfmt.timed_out else "parse"
        rec["reasons"].append(f"parse error ({syntax_error or 'unknown position'} of the assembled crate): "
                              + (rustfmt.problem(limits) or rustfmt.stderr.strip()[:800]))
        return False
    if syntax_error:
        rec["reasons"].append("note: tree-sitter-rust did not parse all of it; static analysis may be incomplete")
    return True


def record_refusal(rec: SampleRecord, refusal: str) -> None:
    """forbidden.py refused the code before any build: `refusal` names the construct and its line."""
    rec["failure"] = "forbidden_construct"
    rec["reasons"].append(refusal)


def record_build(rec: SampleRecord, build: BuildResult, calls_function: bool, limits: Limits) -> bool:
    """Whether the test binary built; `calls_function` (static analysis) decides `links`."""
    if not build.success or build.executable is None:
        problem = build.run.problem(limits)
        rec["failure"] = "timeout" if build.run.timed_out else ("output" if problem else "compile")
        rec["reasons"].append("compile error: " + (problem or build.error_text()))
        rec["unavailable_crates"] = unavailable_crates(build)
        if rec["unavailable_crates"]:
            rec["reasons"].append("the code names crates this offline build cannot link: " + ", ".join(rec["unavailable_crates"]))
        return False
    rec["compiles"] = True
    rec["links"] = calls_function
    if not calls_function:
        rec["reasons"].append("tests never call the function under test")
    return True


_UNLINKED = re.compile(r"unresolved module or unlinked crate `([A-Za-z_][A-Za-z0-9_]*)`")


def unavailable_crates(build: BuildResult) -> list[str]:
    """Crates the code uses that are not among the build's dependencies (loom, a dev-dependency stripped offline),
    when that is the first compile error: the code may be fine, this machine cannot judge it."""
    errors = build.errors()
    if not errors or not _UNLINKED.search(errors[0].rendered or ""):
        return []
    return sorted({m.group(1) for d in errors for m in _UNLINKED.finditer(d.rendered or "")})


def tests_failure(report: LibtestReport, limits: Limits) -> tuple[FailureKind, str] | None:
    """Why one run of the tests does not pass (the failure kind and a reason), or None when it passes."""
    run = report.run
    problem = run.problem(limits)
    if problem:
        kind: FailureKind = "timeout" if run.timed_out else ("disk_limit" if run.disk_exceeded else "output")
        return kind, "tests: " + problem
    if report.bypass:  # the output is not libtest's account of the whole run: nothing in it counts
        return "harness_bypassed", report.bypass
    if report.fails_alone:
        return "flaky", report.fails_alone
    if report.failing_tests:
        return "test_failure", "failing tests: " + ", ".join(report.failing_tests)
    if run.returncode != 0:
        return "test_failure", (f"test binary exited with status {run.returncode}: "
                                + (run.stderr.strip() or run.stdout.strip())[-400:])
    if report.tests_run == 0:
        return "no_tests", ("no test ran (no #[test] function or proptest! case found by the harness; in-crate, a cfg of "
                            "the crate may leave the function's file out of this platform's build)")
    return None


def record_not_in_build(rec: SampleRecord, file: str, features: tuple[str, ...]) -> None:
    """No test ran because the function's file is not compiled on this platform (crate.compiled_sources):
    nothing of the sample was judged, like `crate_build`."""
    rec["failure"] = "not_in_build"
    rec["reasons"] = [r for r in rec["reasons"] if not r.startswith("no test ran")]
    rec["reasons"].append(f"not in this platform's build: rustc did not read {file} for the crate's tests "
                          f"(features: {', '.join(features) or 'none'}); a cfg leaves it out here")


def record_tests(rec: SampleRecord, report: LibtestReport, limits: Limits) -> None:
    rec["tests_run"] = report.tests_run
    rec["failing_tests"] = report.failing_tests
    rec["runs"] = 1
    failed = tests_failure(report, limits)
    if failed:
        rec["failure"], reason = failed
        rec["reasons"].append(reason)
    else:
        rec["passes"] = True
        rec["runs_passed"] = 1


def record_reruns(rec: SampleRecord, reruns: list[LibtestReport], limits: Limits,
                  alone: LibtestReport | None = None) -> None:
    """A sample that passed its first run must pass every rerun too, else it is `flaky` and does not pass.

    A rerun that bypassed the harness makes the sample `harness_bypassed`: that is no chance failure.
    `alone` (libtest.run_each_alone, not counted in `runs`): each passing test must pass on its own too.
    """
    alone_failed = tests_failure(alone, limits) if alone is not None else None
    if alone_failed:
        rec["failure"], reason = alone_failed
        rec["passes"] = False
        rec["reasons"].append(reason)
    bypassed = False
    for number, report in enumerate(reruns, start=2):
        rec["runs"] += 1
        failed = tests_failure(report, limits)
        if failed is None:
            rec["runs_passed"] += 1
            continue
        bypassed = bypassed or failed[0] == "harness_bypassed"
        rec["reasons"].append(f"flaky: run {number} of {1 + len(reruns)} failed: {failed[1]}")
    if rec["runs_passed"] < rec["runs"]:
        rec["failure"] = "harness_bypassed" if bypassed else "flaky"
        rec["passes"] = False
        rec["reasons"].append(f"flaky: passed {rec['runs_passed']} of {rec['runs']} runs")


def record_coverage(rec: SampleRecord, coverage: FunctionCoverage) -> None:
    with_tests = coverage.with_tests
    if with_tests is None:
        rec["reasons"].append(f"coverage: {coverage.with_tests_problem}")
        return
    rec["line_coverage"] = with_tests.line
    rec["branch_coverage"] = coverage.branch_coverage
    rec["function_lines"] = with_tests.lines_total
    rec["function_branches"] = coverage.function_branches
    if not coverage.has_branches:
        rec["reasons"].append("branch coverage: the function has no branch (null)")
    elif not with_tests.branches_total:
        rec["reasons"].append("branch coverage: the function never ran, so its branches count as uncovered (0.0)")
    if coverage.baseline is None:
        rec["reasons"].append(f"baseline coverage: {coverage.baseline_problem}")
    else:
        rec["baseline_line_coverage"] = coverage.baseline.line
        rec["baseline_branch_coverage"] = coverage.baseline_branch_coverage
    if coverage.existing is None or coverage.with_generated is None:
        why = coverage.existing_problem if coverage.existing is None else coverage.with_generated_problem
        rec["reasons"].append(f"coverage gain: not measured: {why}")
        return
    rec["line_coverage_existing"] = coverage.existing.line
    rec["branch_coverage_existing"] = coverage.branch_of(coverage.existing)
    rec["line_coverage_with_generated"] = coverage.with_generated.line
    rec["branch_coverage_with_generated"] = coverage.branch_of(coverage.with_generated)
    rec["line_coverage_gain"] = coverage.line_gain
    rec["branch_coverage_gain"] = coverage.branch_gain


def record_clippy(rec: SampleRecord, clippy: BuildResult, tests_bytes: tuple[int, int], limits: Limits) -> None:
    """Count the warnings clippy (and rustc) raise inside the generated tests, not the function."""
    problem = clippy.run.problem(limits)
    if problem or not clippy.success:
        rec["reasons"].append("clippy did not finish: " + (problem or clippy.error_text(300)))
        return
    warnings = clippy.warnings_in(tests_bytes)
    rec["clippy_warnings"] = len(warnings)
    if warnings:
        names = sorted({d.message for d in warnings})
        rec["reasons"].append(f"clippy: {len(warnings)} warnings in the tests: " + "; ".join(names)[:400])


def record_mutation(rec: SampleRecord, result: MutationResult) -> None:
    rec["reasons"] += result.notes
    if not result.ran:
        rec["reasons"].append(result.reason)
        return
    rec["mutants"] = {"killed": result.count("killed"), "survived": result.count("survived"),
                      "timeout": result.count("timeout"), "unviable": result.count("unviable"),
                      "survivors": result.survivors}
    rec["mutation_score"] = result.score
    if result.score == 0:  # mutation runs only on passing tests
        rec["reasons"].append("weak tests: every test passes and no mutant is killed (mutation score 0)")
    if result.score is None:
        rec["reasons"].append("mutation score undefined: every mutant was unviable")
    for k, verdict in sorted(result.verdicts.items()):
        if verdict in ("survived", "timeout"):
            rec["reasons"].append(f"mutant {verdict}: {result.descriptions[k]}")

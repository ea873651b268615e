"""Read what a libtest binary printed, and check that it is libtest's own account of a whole run.

The tests run inside the binary that prints their verdicts, so their code can end the process
early (`exit(0)` before the failing tests report), print result lines of its own, or run before
`main` and forge everything. A pass is therefore accepted only when three accounts agree: the
listing (`--list --format terse`, same name filter), the run's result lines and summary, and the
exit status; and when the listing holds every `#[test]` function the source visibly declares.
Anything else is `harness_bypassed` (README, "Harness check").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from tree_sitter import Node

from trainer.corpus import rust_ast

Outcome = Literal["ok", "FAILED", "ignored"]

LIST_ARGS = ("--list", "--format", "terse")  # one `name: test` line per test the filter selects, ignored ones too

_HEADER = re.compile(r"^running (\d+) tests?$")
_RESULT = re.compile(r"^test (\S+)( - should panic)? \.\.\. (?:(ok|FAILED)|(ignored)(?:, .*)?)$")
_SUMMARY = re.compile(r"^test result: (ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored; (\d+) measured; "
                      r"(\d+) filtered out; finished in [\d.]+s$")
_LISTED = re.compile(r"^(\S+): (test|bench)$")
_FAILURES = "failures:"  # starts the failures section: the failing tests' captured output, then their names


@dataclass(frozen=True)
class ResultLine:
    name: str
    outcome: Outcome
    should_panic: bool = False


@dataclass(frozen=True)
class Summary:
    ok: bool
    passed: int
    failed: int
    ignored: int
    measured: int
    filtered_out: int


@dataclass(frozen=True)
class RunOutput:
    """The parts of a run's stdout that libtest writes: header, one result per test, summary line(s)."""

    header: int | None            # N of the first `running N tests`
    results: list[ResultLine]     # before the failures section (captured output there is not libtest's)
    summaries: list[Summary]

    def names(self, *outcomes: Outcome) -> list[str]:
        return [r.name for r in self.results if r.outcome in outcomes]


@dataclass(frozen=True)
class Listing:
    tests: list[str]
    stray: list[str]              # non-blank lines that are not `name: test|bench`


@dataclass(frozen=True)
class VerifiedRun:
    """What the run proves: tests that ran (should_panic ones too), failing ones, or why it proves nothing."""

    tests_run: int
    failing_tests: list[str]
    bypass: str | None            # "harness_bypassed: <what disagreed>", or None
    passed_tests: tuple[str, ...] = ()


def parse_run(stdout: str) -> RunOutput:
    header: int | None = None
    results: list[ResultLine] = []
    summaries: list[Summary] = []
    in_failures = False
    for line in stdout.splitlines():
        if (summary := _SUMMARY.match(line)) is not None:
            ok, *counts = summary.groups()
            summaries.append(Summary(ok == "ok", *map(int, counts)))
            in_failures = False
        elif line == _FAILURES:
            in_failures = True
        elif in_failures:
            continue
        elif header is None and (head := _HEADER.match(line)) is not None:
            header = int(head.group(1))
        elif header is not None and (result := _RESULT.match(line)) is not None:
            name, panics, passed_or_failed, ignored = result.groups()
            results.append(ResultLine(name, passed_or_failed or ignored, panics is not None))
    return RunOutput(header, results, summaries)


def parse_listing(stdout: str) -> Listing:
    tests: list[str] = []
    stray: list[str] = []
    for line in stdout.splitlines():
        if (listed := _LISTED.match(line)) is not None:
            tests += [listed.group(1)] if listed.group(2) == "test" else []
        elif line.strip():
            stray.append(line)
    return Listing(tests, stray)


def declared_test_names(tests_source: str) -> set[str]:
    """Names of the `#[test]` fns the generated code surely compiles: none under a `#[cfg(..)]` or inside a fn body.

    Only plain `#[test]`: a macro (proptest!, test_case) may name its tests otherwise, so those are not expected.
    """
    root = rust_ast.parse(tests_source).root_node
    return {rust_ast.function_name(fn) for fn in rust_ast.walk(root)
            if fn.type == "function_item" and _plain_test(fn) and _surely_compiled(fn)}


def _plain_test(fn: Node) -> bool:
    return "#[test]" in (a.replace(" ", "") for a in rust_ast.attributes_of(fn))


def _surely_compiled(fn: Node) -> bool:
    node: Node | None = fn
    while node is not None:
        conditions = [a for a in rust_ast.attributes_of(node) if a.replace(" ", "").startswith("#[cfg")]
        if any(a.replace(" ", "") != "#[cfg(test)]" for a in conditions):
            return False
        node = node.parent
        if node is not None and node.type in ("function_item", "macro_invocation", "macro_definition"):
            return False
    return True


def verify(listing_stdout: str, listing_status: int | None, stdout: str, status: int | None,
           declared: set[str] | frozenset[str] = frozenset()) -> VerifiedRun:
    """Check the run against its listing, the declared test names and the exit status (libtest: 0 iff no failure)."""
    run = parse_run(stdout)
    ran = list(dict.fromkeys(run.names("ok", "FAILED")))
    failing = list(dict.fromkeys(run.names("FAILED")))
    if status != 0 and not (run.summaries and run.summaries[-1].ok):
        return VerifiedRun(len(ran), failing, None)  # a failed or crashed run: a failure, whatever it printed
    listing = parse_listing(listing_stdout)
    why = (_listing_problem(listing, listing_status, declared) or _report_problem(listing.tests, run, status)
           or _summary_problem(run, status))
    return VerifiedRun(len(ran), failing, f"harness_bypassed: {why}" if why else None, tuple(run.names("ok")))


def verify_alone(name: str, stdout: str, status: int | None) -> tuple[Literal["harness_bypassed", "flaky"], str] | None:
    """Why a run of `name` alone (`--exact`) does not prove it passes, or None.

    In a run of its own, a test can forge nothing but its own result: a run alone that is not libtest's is a
    bypass; a test that honestly fails alone though it passed among all depends on the others (flaky).
    """
    alone = verify(f"{name}: test\n", 0, stdout, status)
    if alone.bypass:
        return "harness_bypassed", (f"harness_bypassed: {name} passed among all tests, but its run alone is not "
                                    "libtest's: " + alone.bypass.removeprefix("harness_bypassed: "))
    if status != 0 or alone.failing_tests or alone.tests_run != 1:
        return "flaky", f"flaky: {name} passed among all tests, but fails alone (exit status {status})"
    return None


def _listing_problem(listing: Listing, status: int | None, declared: set[str] | frozenset[str]) -> str | None:
    if status != 0:
        return f"the listing run (--list) exited with status {status}"
    if listing.stray:
        return f"the listing run printed {len(listing.stray)} lines libtest does not write: {listing.stray[0][:80]!r}"
    unlisted = sorted(set(declared) - {name.rsplit("::", 1)[-1] for name in listing.tests})
    if unlisted and listing.tests:  # none listed at all: the module was not compiled (a cfg), a run of no test
        return f"{len(unlisted)} #[test] fns of the source are not in the listing: {', '.join(unlisted)[:200]}"
    return None


def _report_problem(listed: list[str], run: RunOutput, status: int | None) -> str | None:
    if run.header is None:
        return f"{len(listed)} tests listed, no `running N tests` header, exit status {status}"
    if run.header != len(listed):
        return f"{len(listed)} tests listed, the header says {run.header}, exit status {status}"
    reports = Counter(r.name for r in run.results)
    if twice := sorted(name for name, n in reports.items() if n > 1):
        return f"reported more than once: {', '.join(twice)[:200]}, exit status {status}"
    if strangers := sorted(set(reports) - set(listed)):
        return f"reported but not listed: {', '.join(strangers)[:200]}, exit status {status}"
    if len(reports) != len(listed):
        return f"{len(listed)} tests listed, {len(reports)} reported, exit status {status}"
    return None


def _summary_problem(run: RunOutput, status: int | None) -> str | None:
    if len(run.summaries) != 1:
        return f"{len(run.summaries)} `test result:` summary lines (libtest writes one), exit status {status}"
    s = run.summaries[0]
    passed, failed, ignored = (len(run.names(o)) for o in ("ok", "FAILED", "ignored"))
    if (s.passed, s.failed, s.ignored, s.measured) != (passed, failed, ignored, 0) or s.ok != (failed == 0):
        return (f"the summary says {s.passed} passed, {s.failed} failed, {s.ignored} ignored; "
                f"reported {passed}, {failed}, {ignored}")
    if (status == 0) != (failed == 0):
        return f"exit status {status} with {failed} failing tests"
    return None

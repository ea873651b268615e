"""Pairing: each non-test function of a crate with the tests that call it, as one record.

Where a test may live and what "calls it" means are heuristics, documented at the
functions that implement them. A record is `{input, output, metadata}` (README: Corpus).
"""

from __future__ import annotations

import sys
from collections import Counter

from trainer.corpus import rust_ast
from trainer.corpus.context import crate_context
from trainer.corpus.crates import Crate, crate_versions, lib_names, normalized_name, unlinkable_dev_dependencies
from trainer.corpus.in_crate import function_span, in_crate_tests, why_not_buildable
from trainer.corpus.scan import MAX_TESTS_CHARS, Candidate, FileFacts, TestUnit, scan_file
from trainer.corpus.splits import holdout_categories
from trainer.corpus.standalone import self_contained, std_uses

# A function longer than this is rarely a good "write tests for this" prompt and would
# crowd out the tests within the trainer's sequence budget; skipped, and counted.
MAX_FUNCTION_CHARS = 4000


def _is_test_path(rel: str) -> bool:
    """Files holding tests only: a `tests/` dir anywhere, or `tests.rs`/`test.rs` modules."""
    parts = rel.split("/")
    return "tests" in parts[:-1] or parts[-1] in ("tests.rs", "test.rs")


def _skip_path(rel: str) -> bool:
    """Not library code and not tests: benchmarks, examples, build scripts, fuzz targets."""
    parts = rel.split("/")
    return bool({"benches", "examples", "fuzz", "target"} & set(parts[:-1])) or parts[-1] == "build.rs"


def _reaches(candidate: Candidate, test: TestUnit) -> bool:
    if candidate.owner is None:
        return True
    return bool(candidate.owner_names & test.names or candidate.trait_names & test.imported)


def _tests_for(candidate: Candidate, pool: list[TestUnit]) -> tuple[list[TestUnit], int]:
    """(tests that call the candidate by name, best first, within MAX_TESTS_CHARS; all hits).

    A method must also have its impl's type or trait named in the test (or its trait
    imported by the test's module), so `.len()` on a Vec does not pair with every `len`
    method of the crate. Order: tests named after the function, then tests in the
    function's own file, then by file and position.
    """
    hits = [t for t in pool if candidate.name in t.calls and _reaches(candidate, t)]
    hits.sort(key=lambda t: (candidate.name not in t.name, t.file != candidate.file, t.file, t.position))
    chosen, total = [], 0
    for test in hits:
        if total + len(test.source) > MAX_TESTS_CHARS:
            break
        chosen.append(test)
        total += len(test.source) + 2
    return chosen, len(hits)


def _record(crate: Crate, candidate: Candidate, occurrence: int, tests: list[TestUnit], names: set[str],
            macros: set[str]) -> dict:
    flags = rust_ast.categories(candidate.node)
    uses = std_uses(candidate, tests)
    return {
        "input": candidate.source,
        "output": "\n\n".join(t.source for t in tests),
        "metadata": {
            "id": f"{normalized_name(crate.name)}/{candidate.file}::{candidate.qualname}#{occurrence}",
            "crate": crate.name,
            "crate_version": crate.version,
            "crate_dir": str(crate.path),
            "file": candidate.file,
            "function_span": function_span(candidate),
            "in_crate_tests": in_crate_tests(candidate, tests, names, macros),
            "crate_context": crate_context(candidate),
            "function": candidate.qualname,
            "owner": candidate.owner,
            "cyclomatic_complexity": rust_ast.cyclomatic_complexity(candidate.node),
            **flags,
            "categories": holdout_categories(candidate, flags),
            "n_tests": len(tests),
            "has_proptest": any(t.is_proptest for t in tests),
            "self_contained": self_contained(candidate, tests, uses),
            "std_uses": [u.text for u in uses],
        },
    }


def scan_crate(crate: Crate, report: dict) -> dict[str, FileFacts]:
    """The facts of every library and test file of `crate`, by path; unparsable files are
    skipped with a warning and listed in `report["skipped_files"]`."""
    files: dict[str, FileFacts] = {}
    for path in sorted(p for p in crate.path.rglob("*.rs") if p.is_file()):
        rel = path.relative_to(crate.path).as_posix()
        if _skip_path(rel):
            continue
        reason = None
        try:
            src = path.read_bytes()
            src.decode("utf-8")
            tree = rust_ast.parse(src)
            if rust_ast.has_syntax_errors(tree):
                reason = "syntax_error"
        except UnicodeDecodeError:
            reason = "non_utf8"
        except OSError:
            reason = "unreadable"
        if reason:
            report["skipped_files"].append({"file": f"{crate.path.name}/{rel}", "reason": reason})
            print(f"warning: skipped {path} ({reason})", file=sys.stderr)
            continue
        files[rel] = scan_file(rel, src, tree, test_file=_is_test_path(rel))
    return files


def _buildable(files: dict[str, FileFacts], unlinkable: set[str], report: dict) -> list[TestUnit]:
    """Leave out, in place, the tests that cannot compile in an appended module on this machine
    (in_crate.why_not_buildable): a record must be evaluable in its crate. Counted by reason;
    returns the tests left out."""
    dropped = []
    for facts in files.values():
        kept = []
        for test in facts.tests:
            reason = why_not_buildable(test, unlinkable)
            if reason is None:
                kept.append(test)
            else:
                report["skipped_tests"][reason] += 1
                dropped.append(test)
        facts.tests[:] = kept
    return dropped


def pair_crate(crate: Crate, report: dict) -> list[dict]:
    """All (function, tests) records of one crate, in id order; counts skips into `report`."""
    files = scan_crate(crate, report)
    dropped = _buildable(files, unlinkable_dev_dependencies(crate, crate_versions(crate.path.parent)), report)
    shared_pool = [t for rel, facts in files.items() if _is_test_path(rel) for t in facts.tests]
    names = lib_names(crate)
    macros = set().union(*(facts.macros for rel, facts in files.items() if not _is_test_path(rel)))
    records = []
    for rel, facts in files.items():
        pool = facts.tests + [t for t in shared_pool if t.file != rel]
        occurrences: Counter[str] = Counter()
        for cand in facts.candidates:
            occurrence = occurrences[cand.qualname]
            occurrences[cand.qualname] += 1
            report["functions_scanned"] += 1
            tests, hits = _tests_for(cand, pool)
            if not hits:
                if _tests_for(cand, dropped)[1]:
                    report["skipped_functions"]["tests_not_buildable_here"] += 1
                continue
            if not tests:
                report["skipped_functions"]["tests_too_large"] += 1
                continue
            if len(cand.source) > MAX_FUNCTION_CHARS:
                report["skipped_functions"]["function_too_large"] += 1
                continue
            records.append(_record(crate, cand, occurrence, tests, names, macros))
    return sorted(records, key=lambda r: r["metadata"]["id"])

"""Run a sample's libtest binary (what `cargo test` builds) in the sandbox and read its report.

The original's test run, the coverage runs and every mutant run go through `run_test_binary`,
so each runs with the same environment in the sample's `run/` directory (the crate's own tests,
run for coverage, get `run-existing/`, so nothing they leave behind reaches the generated tests).
`run_tests` lists the tests first and trusts the run only as far as libtest_report.verify proves it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from .libtest_report import LIST_ARGS, verify, verify_alone
from .mutation_operators import ENV_VAR
from .sandbox import Limits, RunResult, run_sandboxed

# A test-name filter that selects no test: the binary starts, runs nothing and exits.
NO_TEST_FILTER = "__rtf_baseline_matches_no_test__"
EXISTING_RUN_DIR = "run-existing"  # the working directory of the crate's own tests (coverage.measure_function)


def run_test_binary(executable: Path, sample_dir: Path, *, uid: int, limits: Limits, mutant: int | None = None,
                    profile_dir: Path | None = None, args: tuple[str, ...] = (), run_dir_name: str = "run") -> RunResult:
    """Run the test binary sandboxed in `sample_dir/<run_dir_name>`.

    `mutant` switches on that mutant of a schema build; with `profile_dir`, coverage profiles go there.
    Those two dirs are all the run may write of the host (the sandbox's `scratch`, capped at `limits.disk_bytes`).
    """
    run_dir = sample_dir / run_dir_name
    env = {"PATH": "/usr/bin:/bin", "HOME": str(run_dir), "RUST_BACKTRACE": "0", "LANG": "C.UTF-8"}
    if mutant is not None:
        env[ENV_VAR] = str(mutant)
    if profile_dir is not None:
        env["LLVM_PROFILE_FILE"] = str(profile_dir / "%p-%m.profraw")
    scratch = (run_dir,) if profile_dir is None else (run_dir, profile_dir)
    return run_sandboxed([str(executable), *args], cwd=run_dir, uid=uid, limits=limits, env=env, scratch=scratch)


@dataclass
class LibtestReport:
    """One run of the original's tests (or the runs of each test alone): the run and what it proves."""

    run: RunResult                 # the listing run instead, when the harness had to stop that one
    tests_run: int                 # tests that ran (not ignored; should_panic ones count)
    failing_tests: list[str]
    bypass: str | None = None      # why the output is not libtest's account of the whole run (harness_bypassed)
    passed_tests: tuple[str, ...] = ()
    fails_alone: str | None = None  # a test that passed among all fails alone, honestly (flaky)


def run_tests(executable: Path, sample_dir: Path, *, uid: int, limits: Limits, name_filter: str | None = None,
              profiles: str = "prof", declared: frozenset[str] = frozenset()) -> LibtestReport:
    """List, then run the tests (only those whose name contains `name_filter`, when given) and verify the run.

    `declared`: the `#[test]` fns the generated code visibly declares; the listing must hold them.
    Profiles go to `sample_dir/<profiles>`: `prof` is what coverage reads, so reruns use another.
    """
    args = (name_filter,) if name_filter else ()
    profile_dir = sample_dir / profiles
    listing = run_test_binary(executable, sample_dir, uid=uid, limits=limits, profile_dir=profile_dir,
                              args=(*LIST_ARGS, *args))
    if listing.problem(limits):
        return LibtestReport(listing, tests_run=0, failing_tests=[])
    run = run_test_binary(executable, sample_dir, uid=uid, limits=limits, profile_dir=profile_dir, args=args)
    proven = verify(listing.stdout, listing.returncode, run.stdout, run.returncode, declared)
    return LibtestReport(run, proven.tests_run, proven.failing_tests, proven.bypass, proven.passed_tests)


def run_each_alone(executable: Path, sample_dir: Path, names: tuple[str, ...], *, uid: int,
                   limits: Limits) -> LibtestReport:
    """Run each test that passed alone (`--exact`), all within one more `limits.wall_s`.

    Alone, a test can forge only its own result: another test's forged pass or early exit shows here.
    A forgery outranks an honest failure (the forger may sort after its victim). Profiles go to
    `prof-rerun`, so coverage stays the first run's.
    """
    deadline = time.monotonic() + limits.wall_s
    found: dict[str, str] = {}
    run = None
    for name in names:
        wall = max(deadline - time.monotonic(), 0.1)
        budget = replace(limits, wall_s=wall, cpu_s=max(1, min(limits.cpu_s, int(wall) + 1)))
        run = run_test_binary(executable, sample_dir, uid=uid, limits=budget, profile_dir=sample_dir / "prof-rerun",
                              args=("--exact", name))
        if run.problem(budget):
            return LibtestReport(run, len(names), [])
        if judged := verify_alone(name, run.stdout, run.returncode):
            found.setdefault(*judged)
    last = run or RunResult(0, "", "", False, False, 0.0)
    return LibtestReport(last, len(names), [], found.get("harness_bypassed"), names, found.get("flaky"))

"""Run a sample's libtest binary (what `cargo test` builds) in the sandbox and read its report.

The original's test run, the coverage runs and every mutant run go through `run_test_binary`,
so each runs with the same environment in the sample's `run/` directory (the crate's own tests,
run for coverage, get `run-existing/`, so nothing they leave behind reaches the generated tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .mutation_operators import ENV_VAR
from .sandbox import Limits, RunResult, run_sandboxed

_RESULT_LINE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", re.M)

# A test-name filter that selects no test: the binary starts, runs nothing and exits.
NO_TEST_FILTER = "__rtf_baseline_matches_no_test__"
EXISTING_RUN_DIR = "run-existing"  # the working directory of the crate's own tests (coverage.measure_function)


def run_test_binary(executable: Path, sample_dir: Path, *, uid: int, limits: Limits, mutant: int | None = None,
                    profile_dir: Path | None = None, args: tuple[str, ...] = (), run_dir_name: str = "run") -> RunResult:
    """Run the test binary sandboxed in `sample_dir/<run_dir_name>`.

    `mutant` switches on that mutant of a schema build; with `profile_dir`, coverage profiles go there.
    """
    run_dir = sample_dir / run_dir_name
    env = {"PATH": "/usr/bin:/bin", "HOME": str(run_dir), "RUST_BACKTRACE": "0", "LANG": "C.UTF-8"}
    if mutant is not None:
        env[ENV_VAR] = str(mutant)
    if profile_dir is not None:
        env["LLVM_PROFILE_FILE"] = str(profile_dir / "%p-%m.profraw")
    return run_sandboxed([str(executable), *args], cwd=run_dir, uid=uid, limits=limits, env=env)


@dataclass
class LibtestReport:
    """One run of the original's tests: the run itself and what libtest printed about each test."""

    run: RunResult
    tests_run: int                 # tests that ran (not ignored)
    failing_tests: list[str]


def run_tests(executable: Path, sample_dir: Path, *, uid: int, limits: Limits, name_filter: str | None = None,
              profiles: str = "prof") -> LibtestReport:
    """Run the tests once (only those whose name contains `name_filter`, when given).

    Profiles go to `sample_dir/<profiles>`: `prof` is what coverage reads, so reruns use another.
    """
    args = (name_filter,) if name_filter else ()
    run = run_test_binary(executable, sample_dir, uid=uid, limits=limits, profile_dir=sample_dir / profiles, args=args)
    results = _RESULT_LINE.findall(run.stdout)
    return LibtestReport(run, tests_run=sum(1 for _, outcome in results if outcome != "ignored"),
                         failing_tests=[name for name, outcome in results if outcome == "FAILED"])

"""Line and branch coverage of the function, from LLVM source-based coverage.

The test binary is built with `-C instrument-coverage -Zcoverage-options=branch` (see
crate.COVERAGE_FLAGS); its profiles are merged with llvm-profdata-22 and exported with
llvm-cov-22 as lcov, whose DA (line) and BRDA (branch) records are counted over the
function's lines only. Branches are the two outcomes of each `if`/`while` condition and
of each `&&`/`||` operand and match guard (what rustc instruments); match arms are not
branches to rustc. A function with no branch has branch coverage null, not 100%.

The baseline is the same binary run with a filter that selects no test: the coverage
the function gets with no test at all, which the summary subtracts to credit the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.corpus import rust_ast

from .libtest import NO_TEST_FILTER, run_test_binary
from .sandbox import Limits, run_sandboxed
from .toolchain import Toolchain

TOOL_LIMITS = Limits(wall_s=60, cpu_s=60, memory_bytes=4 << 30, file_bytes=256 << 20, processes=64,
                     output_bytes=16 << 20)


@dataclass
class Coverage:
    lines_total: int
    lines_hit: int
    branches_total: int
    branches_hit: int

    @property
    def line(self) -> float | None:
        return self.lines_hit / self.lines_total if self.lines_total else None

    @property
    def branch(self) -> float | None:
        return self.branches_hit / self.branches_total if self.branches_total else None


def has_branch_points(code: str) -> bool:
    """Whether the code has a condition rustc instruments as a branch (if, while, &&, ||, guard).

    Needed because llvm-cov emits no branch records for a function that never ran, so
    "no branch records" alone cannot tell "no branches" from "never executed".
    """
    for node in rust_ast.walk(rust_ast.parse(code).root_node):
        if node.type in ("if_expression", "while_expression"):
            return True
        if node.type == "match_pattern" and node.child_by_field_name("condition") is not None:
            return True
        if node.type == "binary_expression":
            op = node.child_by_field_name("operator")
            if op is not None and op.type in ("&&", "||"):
                return True
    return False


def branch_ratio(c: Coverage, function_has_branches: bool) -> float | None:
    """Branch coverage; 0.0 for a never-executed function that has branches; None without branches."""
    if c.branches_total:
        return c.branch
    if function_has_branches and c.lines_hit == 0:
        return 0.0
    return None


def parse_lcov(text: str, file_suffix: str, lines: tuple[int, int]) -> Coverage:
    """Count DA/BRDA records of the file ending in `file_suffix` within `lines` (inclusive)."""
    lo, hi = lines
    lt = lh = bt = bh = 0
    in_file = False
    for raw in text.splitlines():
        if raw.startswith("SF:"):
            in_file = raw[3:].endswith(file_suffix)
        elif not in_file:
            continue
        elif raw.startswith("DA:"):
            line, count = raw[3:].split(",")[:2]
            if lo <= int(line) <= hi:
                lt += 1
                lh += int(count) > 0
        elif raw.startswith("BRDA:"):
            line, _block, _branch, taken = raw[5:].split(",")
            if lo <= int(line) <= hi:
                bt += 1
                bh += taken not in ("-", "0")
    return Coverage(lt, lh, bt, bh)


def measure(llvm_profdata: Path, llvm_cov: Path, executable: Path, prof_dir: Path, *, cwd: Path, uid: int,
            lines: tuple[int, int]) -> tuple[Coverage | None, str | None]:
    """Coverage of `lines` of src/lib.rs from the profiles in `prof_dir`, or (None, reason)."""
    raws = sorted(prof_dir.glob("*.profraw"))
    if not raws:
        return None, "no coverage profile written (the test binary did not exit normally)"
    merged = prof_dir / "merged.profdata"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    run = run_sandboxed([str(llvm_profdata), "merge", "-sparse", "-o", str(merged), *map(str, raws)],
                        cwd=cwd, uid=uid, limits=TOOL_LIMITS, env=env)
    if not run.ok:
        return None, "llvm-profdata-22 merge failed: " + (run.problem(TOOL_LIMITS) or run.stderr.strip()[-300:])
    run = run_sandboxed([str(llvm_cov), "export", "-format=lcov", f"-instr-profile={merged}", str(executable)],
                        cwd=cwd, uid=uid, limits=TOOL_LIMITS, env=env)
    if not run.ok:
        return None, "llvm-cov-22 export failed: " + (run.problem(TOOL_LIMITS) or run.stderr.strip()[-300:])
    return parse_lcov(run.stdout, "src/lib.rs", lines), None


@dataclass
class FunctionCoverage:
    """The function's coverage with its tests and without any (the baseline), or why either is missing."""

    with_tests: Coverage | None
    with_tests_problem: str | None
    baseline: Coverage | None
    baseline_problem: str | None
    has_branches: bool

    @property
    def branch_coverage(self) -> float | None:
        return branch_ratio(self.with_tests, self.has_branches) if self.with_tests else None

    @property
    def baseline_branch_coverage(self) -> float | None:
        return branch_ratio(self.baseline, self.has_branches) if self.baseline else None

    @property
    def function_branches(self) -> int | None:
        """Branch outcomes in the function; None when it has branches that llvm-cov never reported (it never ran)."""
        if self.with_tests is None:
            return None
        return self.with_tests.branches_total if self.with_tests.branches_total or not self.has_branches else None


def measure_function(toolchain: Toolchain, executable: Path, sample_dir: Path, *, uid: int, lines: tuple[int, int],
                     function_code: str, limits: Limits) -> FunctionCoverage:
    """Coverage of the function's `lines` from the test run's profiles, then from a no-test baseline run.

    The test run (libtest.run_tests) has already written its profiles to `sample_dir/prof`.
    """
    def measure_profiles(prof_dir: Path) -> tuple[Coverage | None, str | None]:
        return measure(toolchain.llvm_profdata, toolchain.llvm_cov, executable, prof_dir, cwd=sample_dir / "run",
                       uid=uid, lines=lines)

    with_tests, why = measure_profiles(sample_dir / "prof")
    if with_tests is None:
        return FunctionCoverage(None, why, None, None, has_branch_points(function_code))
    run_test_binary(executable, sample_dir, uid=uid, limits=limits, profile_dir=sample_dir / "prof-base",
                    args=("--exact", NO_TEST_FILTER))
    baseline, baseline_why = measure_profiles(sample_dir / "prof-base")
    return FunctionCoverage(with_tests, None, baseline, baseline_why, has_branch_points(function_code))

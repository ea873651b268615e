"""Line and branch coverage of the function, from LLVM source-based coverage.

The test binary is built with `-C instrument-coverage -Zcoverage-options=branch` (see
crate.COVERAGE_FLAGS); its profiles are merged with llvm-profdata-22 and exported with
llvm-cov-22 as lcov, whose DA (line) and BRDA (branch) records are counted over the
function's lines only. Branches are the two outcomes of each `if`/`while` condition and
of each `&&`/`||` operand and match guard (what rustc instruments); match arms are not
branches to rustc. A function with no branch has branch coverage null, not 100%.

The same binary measures the function three ways: by the generated tests alone, by the
crate's existing tests alone (in-crate: every test but the generated module's; standalone:
none, so the no-test baseline) and by both (the two runs' profiles merged). The coverage
gain, both - existing, is what the generated tests add (TestGen-LLM's "improves coverage").
The baseline is the same binary run with a filter that selects no test: the coverage the
function gets with no test at all (today's delta subtracts it: plain coverage, not a gain).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.corpus import rust_ast

from .libtest import EXISTING_RUN_DIR, NO_TEST_FILTER, run_test_binary
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


def measure(llvm_profdata: Path, llvm_cov: Path, executable: Path, prof_dirs: tuple[Path, ...], merged: Path, *, cwd: Path,
            uid: int, lines: tuple[int, int], source_file: str = "src/lib.rs") -> tuple[Coverage | None, str | None]:
    """Coverage of `lines` of `source_file` (relative to the crate) from the profiles in `prof_dirs`, or (None, reason).

    The profiles of several runs are merged into `merged` (llvm-profdata sums the counters: the union of what each ran).
    """
    per_run = [sorted(prof_dir.glob("*.profraw")) for prof_dir in prof_dirs]
    raws = [raw for run_raws in per_run for raw in run_raws]
    if not all(per_run):
        return None, "no coverage profile written (the test binary did not exit normally)"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    run = run_sandboxed([str(llvm_profdata), "merge", "-sparse", "-o", str(merged), *map(str, raws)],
                        cwd=cwd, uid=uid, limits=TOOL_LIMITS, env=env, writable=(merged.parent,))
    if not run.ok:
        return None, "llvm-profdata-22 merge failed: " + (run.problem(TOOL_LIMITS) or run.stderr.strip()[-300:])
    run = run_sandboxed([str(llvm_cov), "export", "-format=lcov", f"-instr-profile={merged}", str(executable)],
                        cwd=cwd, uid=uid, limits=TOOL_LIMITS, env=env, writable=())
    if not run.ok:
        return None, "llvm-cov-22 export failed: " + (run.problem(TOOL_LIMITS) or run.stderr.strip()[-300:])
    return parse_lcov(run.stdout, source_file, lines), None


def gain(after: Coverage, before: Coverage, after_share: float | None, before_share: float | None, *, line: bool) -> float | None:
    """What the generated tests add (both - existing); None when either share is undefined.

    From the hit counts when both counted the same lines / branch outcomes (so 1 of 5 more lines is
    exactly 0.2), from the shares otherwise (a function that never ran reports no branch).
    """
    if after_share is None or before_share is None:
        return None
    total, before_total = (after.lines_total, before.lines_total) if line else (after.branches_total, before.branches_total)
    if total and total == before_total:
        hits = after.lines_hit - before.lines_hit if line else after.branches_hit - before.branches_hit
        return hits / total
    return after_share - before_share


@dataclass
class FunctionCoverage:
    """The function's coverage measured three ways with one binary (and a no-test baseline), or why one is missing.

    `with_tests`: the generated tests alone; `existing`: the crate's own tests alone (standalone: the no-test
    baseline, there are none); `with_generated`: both. `coverage_gain` = with_generated - existing.
    """

    with_tests: Coverage | None
    with_tests_problem: str | None
    baseline: Coverage | None
    baseline_problem: str | None
    has_branches: bool
    existing: Coverage | None = None
    existing_problem: str | None = None
    with_generated: Coverage | None = None
    with_generated_problem: str | None = None

    def branch_of(self, c: Coverage | None) -> float | None:
        return branch_ratio(c, self.has_branches) if c else None

    @property
    def branch_coverage(self) -> float | None:
        return self.branch_of(self.with_tests)

    @property
    def baseline_branch_coverage(self) -> float | None:
        return self.branch_of(self.baseline)

    @property
    def line_gain(self) -> float | None:
        both, existing = self.with_generated, self.existing
        return gain(both, existing, both.line, existing.line, line=True) if both and existing else None

    @property
    def branch_gain(self) -> float | None:
        both, existing = self.with_generated, self.existing
        return (gain(both, existing, self.branch_of(both), self.branch_of(existing), line=False) if both and existing
                else None)

    @property
    def function_branches(self) -> int | None:
        """Branch outcomes in the function; None when it has branches that llvm-cov never reported (it never ran)."""
        if self.with_tests is None:
            return None
        return self.with_tests.branches_total if self.with_tests.branches_total or not self.has_branches else None


def measure_function(toolchain: Toolchain, executable: Path, sample_dir: Path, *, uid: int, lines: tuple[int, int],
                     function_code: str, limits: Limits, source_file: str = "src/lib.rs",
                     generated_module: str | None = None) -> FunctionCoverage:
    """Coverage of the function's `lines` of `source_file`: by the generated tests, by no test, by the crate's own tests, by both.

    The test run (libtest.run_tests) has already written the generated tests' profiles to `sample_dir/prof`.
    `generated_module` is the in-crate libtest filter of the generated module (`rtf_generated_<hash>::`): the
    crate's existing tests are every other test of the binary. None (standalone): there are no existing tests,
    so existing is the no-test baseline and both is the generated tests alone.
    """
    def measure_profiles(*dirs: str, merged: str) -> tuple[Coverage | None, str | None]:
        return measure(toolchain.llvm_profdata, toolchain.llvm_cov, executable, tuple(sample_dir / d for d in dirs),
                       sample_dir / merged / "merged.profdata", cwd=sample_dir / "run", uid=uid, lines=lines,
                       source_file=source_file)

    has_branches = has_branch_points(function_code)
    with_tests, why = measure_profiles("prof", merged="prof")
    if with_tests is None:
        return FunctionCoverage(None, why, None, None, has_branches)
    run_test_binary(executable, sample_dir, uid=uid, limits=limits, profile_dir=sample_dir / "prof-base",
                    args=("--exact", NO_TEST_FILTER))
    baseline, baseline_why = measure_profiles("prof-base", merged="prof-base")
    if generated_module is None:
        return FunctionCoverage(with_tests, None, baseline, baseline_why, has_branches, baseline, baseline_why, with_tests)
    # The crate's own tests: a failing one still ran the code it reached, so its coverage counts as executed.
    run_test_binary(executable, sample_dir, uid=uid, limits=limits, profile_dir=sample_dir / "prof-existing",
                    args=("--skip", generated_module), run_dir_name=EXISTING_RUN_DIR)
    existing, existing_why = measure_profiles("prof-existing", merged="prof-existing")
    both, both_why = (measure_profiles("prof", "prof-existing", merged="prof-both") if existing is not None
                      else (None, "the existing tests were not measured"))
    return FunctionCoverage(with_tests, None, baseline, baseline_why, has_branches, existing, existing_why, both, both_why)

"""Run the mutants of one sample: one schema build, one test run per mutant.

Verdicts: killed (the tests fail or crash), survived (they pass), timeout (the harness
stopped the run: wall time or output cap), unviable (the mutant does not type-check; it
is dropped from the schema and the schema rebuilt). `run_separately` is the slow
reference way (one build per mutant) that the schema must agree with. Both write their
variants of the function through a `SchemaPlace`: the standalone crate's lib.rs, or (for an
in-crate sample, see prepare.in_crate_place) the function's own file in the crate copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import mutation_operators as M
from .crate import BUILD_LIMITS, STANDALONE, CargoTarget, Workspace, assemble
from .libtest import run_test_binary
from .sandbox import Limits, RunResult

MAX_SCHEMA_ROUNDS = 6


@dataclass
class MutationResult:
    ran: bool
    reason: str | None = None
    verdicts: dict[int, str] = field(default_factory=dict)      # mutant id -> killed|survived|timeout|unviable
    descriptions: dict[int, str] = field(default_factory=dict)
    survivors: list[str] = field(default_factory=list)          # unified diffs
    notes: list[str] = field(default_factory=list)
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    builds: int = 0

    def count(self, verdict: str) -> int:
        return sum(v == verdict for v in self.verdicts.values())

    @property
    def score(self) -> float | None:
        denom = self.count("killed") + self.count("survived") + self.count("timeout")
        return self.count("killed") / denom if self.ran and denom else None


@dataclass(frozen=True)
class SchemaPlace:
    """Where a variant of the function is built: `write(code, with_helper)` writes it and returns the text of the
    file that holds it (rustc's error spans point into that file), `target` builds it, `test_filter` picks the tests."""

    write: Callable[[str, bool], str]
    target: CargoTarget = STANDALONE
    test_filter: str | None = None

    def run_args(self) -> tuple[str, ...]:
        return (self.test_filter,) if self.test_filter else ()


def standalone_place(ws: Workspace, sample_dir: Path, tests: str) -> SchemaPlace:
    """The standalone crate: the variant, the schema helper when asked, then the tests, as src/lib.rs."""
    def write(code: str, with_helper: bool) -> str:
        source = assemble(code, tests, helper=M.HELPER if with_helper else "").source
        ws.write_source(sample_dir, source)
        return source
    return SchemaPlace(write)


def mutant_limits(base: Limits, original_seconds: float) -> Limits:
    """A mutant may be slower than the original, but an endless loop must end fast."""
    wall = min(base.wall_s, max(1.0, 5 * original_seconds + 0.5))
    return replace(base, wall_s=wall, cpu_s=max(1, int(wall) + 1))


def _classify(run: RunResult) -> str:
    if run.timed_out or run.output_exceeded:
        return "timeout"
    return "survived" if run.returncode == 0 else "killed"


def run_schema(ws: Workspace, sample_dir: Path, function_code: str, tests: str, *, uid: int, limits: Limits,
               original_seconds: float, place: SchemaPlace | None = None) -> MutationResult:
    """Build the schema (dropping unviable mutants) and run the tests once per mutant."""
    place = place or standalone_place(ws, sample_dir, tests)
    sites, notes = M.find_sites(function_code)
    muts = [m for s in sites for m in s.mutants]
    result = MutationResult(ran=False, notes=notes, descriptions={m.id: m.describe(function_code) for m in muts})
    if not muts:
        result.reason = "mutation not run: no mutation sites in the function"
        return result
    active = {m.id for m in muts}
    build = None
    for _ in range(MAX_SCHEMA_ROUNDS):
        source = place.write(M.render_schema(function_code, active), True)
        t0 = time.monotonic()
        build = ws.build_tests(sample_dir, uid=uid, coverage=False, quiet=True, target=place.target)
        result.build_seconds += time.monotonic() - t0
        result.builds += 1
        if build.success:
            break
        problem = build.run.problem(BUILD_LIMITS)
        if problem:
            result.reason = "mutation not run: schema build " + problem
            return result
        intervals = M.marker_intervals(source)
        bad = {M.innermost_mutant(intervals, start) for d in build.errors() for start, _ in d.spans} - {None}
        bad &= active
        if not bad:
            result.reason = "mutation not run: schema did not compile outside any mutant: " + build.error_text(600)
            return result
        for k in bad:
            result.verdicts[k] = "unviable"
        active -= bad
        if not active:
            break
    else:
        result.reason = f"mutation not run: schema still failing after {MAX_SCHEMA_ROUNDS} rounds"
        return result
    if active and (build is None or build.executable is None):
        result.reason = "mutation not run: schema build produced no test binary"
        return result
    if active:
        # Mutant 0 is the original: the schema must pass with every switch off, and its
        # run time, taken under the same load, sets the per-mutant time limit.
        base = run_test_binary(build.executable, sample_dir, uid=uid, limits=limits, mutant=0, args=place.run_args())
        if not base.ok:
            result.reason = "mutation not run: the schema with no mutant active fails its tests"
            return result
        original_seconds = max(original_seconds, base.seconds)
    result.ran = True
    lim = mutant_limits(limits, original_seconds)
    by_id = {m.id: m for m in muts}
    t0 = time.monotonic()
    for k in sorted(active):
        run = run_test_binary(build.executable, sample_dir, uid=uid, limits=lim, mutant=k, args=place.run_args())
        result.verdicts[k] = _classify(run)
        if result.verdicts[k] == "survived":
            result.survivors.append(by_id[k].diff(function_code))
    result.run_seconds = time.monotonic() - t0
    return result


def run_separately(ws: Workspace, sample_dir: Path, function_code: str, tests: str, *, uid: int, limits: Limits,
                   original_seconds: float, place: SchemaPlace | None = None) -> MutationResult:
    """Reference implementation: one plain build and test run per mutant (slow; for checks)."""
    place = place or standalone_place(ws, sample_dir, tests)
    muts = M.find_mutants(function_code)
    result = MutationResult(ran=True, descriptions={m.id: m.describe(function_code) for m in muts})
    place.write(function_code, False)
    build = ws.build_tests(sample_dir, uid=uid, coverage=False, quiet=True, target=place.target)
    if build.executable is not None:  # calibrate the time limit on the original, as run_schema does
        base = run_test_binary(build.executable, sample_dir, uid=uid, limits=limits, args=place.run_args())
        original_seconds = max(original_seconds, base.seconds)
    lim = mutant_limits(limits, original_seconds)
    for m in muts:
        place.write(m.apply(function_code), False)
        t0 = time.monotonic()
        build = ws.build_tests(sample_dir, uid=uid, coverage=False, quiet=True, target=place.target)
        result.build_seconds += time.monotonic() - t0
        result.builds += 1
        if not build.success or build.executable is None:
            result.verdicts[m.id] = "unviable"
            continue
        t0 = time.monotonic()
        run = run_test_binary(build.executable, sample_dir, uid=uid, limits=lim, args=place.run_args())
        result.run_seconds += time.monotonic() - t0
        result.verdicts[m.id] = _classify(run)
        if result.verdicts[m.id] == "survived":
            result.survivors.append(m.diff(function_code))
    return result

"""Evaluate every sample: static analysis, sandboxed build and test, coverage, clippy, mutants.

One sample = one thread of the pool holding one sandbox slot (its own uid and crate
directory); the threads mostly wait on subprocesses, so a thread pool is enough.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import re
import shutil
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from trainer.corpus import rust_ast

from . import assertions, codebleu
from . import coverage as cov
from .crate import BUILD_LIMITS, Layout, Workspace, assemble, refusal
from .mutation_runner import run_schema, test_env
from .samples import InputProblem, Sample, from_dicts, read_samples
from .sandbox import Limits, run_sandboxed, sandbox_uid
from .toolchain import Toolchain, ToolchainMissing, find_toolchain
from .verdict import empty_record, summarize

_RESULT_LINE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", re.M)
_RUNNING = re.compile(r"^running (\d+) tests?", re.M)
NO_TEST_FILTER = "__rtf_baseline_matches_no_test__"


@dataclass(frozen=True)
class Options:
    mutation: bool = True
    coverage: bool = True
    test_timeout: float = 30.0
    build_timeout: float = 120.0

    @property
    def test_limits(self) -> Limits:
        return Limits(wall_s=self.test_timeout, cpu_s=int(self.test_timeout) + 1, memory_bytes=2 << 30,
                      file_bytes=64 << 20, open_files=256, processes=64, output_bytes=1 << 20)

    @property
    def build_limits(self) -> Limits:
        return replace(BUILD_LIMITS, wall_s=self.build_timeout, cpu_s=int(2 * self.build_timeout))


def check_sandbox(toolchain: Toolchain) -> None:
    """The sandbox needs root (namespaces, setpriv): fail at start, not per sample."""
    if os.geteuid() != 0:
        raise ToolchainMissing("the sandbox needs root to create namespaces and drop to an unprivileged uid; run as root")
    probe = Path(tempfile.mkdtemp(prefix="rtf-probe-"))
    try:
        os.chmod(probe, 0o755)
        probe_slot = claim_slots(1)  # a free slot: its uid is killed wholesale after the run
        run = run_sandboxed(["true"], cwd=probe, uid=sandbox_uid(next(iter(probe_slot))), limits=Limits(wall_s=10),
                            env={"PATH": "/usr/bin:/bin"})
        for fh in probe_slot.values():
            fh.close()
        if run.returncode != 0:
            raise ToolchainMissing("sandbox unavailable: `unshare --net --mount --pid` + `setpriv` failed: "
                                   + run.stderr.strip()[-200:] + " (install util-linux; run as root)")
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40]


def _first_syntax_error(code: str) -> str:
    for node in rust_ast.walk(rust_ast.parse(code).root_node):
        if node.type == "ERROR" or node.is_missing:
            return f"line {node.start_point[0] + 1}"
    return "unknown position"


SLOT_DIR = Path("/run/lock/rtf-sandbox")
MAX_SLOTS = 512


def claim_slots(n: int) -> dict[int, object]:
    """Claim `n` sandbox slots (uids) that no other evaluator process on this machine holds.

    Each slot's uid is killed wholesale after every run, so two processes sharing a slot
    would kill each other's builds; an flock per slot keeps them apart.
    """
    SLOT_DIR.mkdir(parents=True, exist_ok=True)
    held: dict[int, object] = {}
    for k in range(MAX_SLOTS):
        fh = open(SLOT_DIR / f"{k}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        held[k] = fh
        if len(held) == n:
            return held
    raise ToolchainMissing(f"no free sandbox slot in {SLOT_DIR} ({MAX_SLOTS} are held by other evaluator processes)")


class Evaluator:
    """Holds the toolchain, the cache workspace and the pool of sandbox slots."""

    def __init__(self, toolchain: Toolchain, jobs: int, options: Options):
        self.toolchain = toolchain
        self.jobs = max(1, jobs)
        self.options = options
        cpus = os.cpu_count() or 1
        self.ws = Workspace(toolchain, cargo_jobs=max(1, cpus // self.jobs), build_limits=options.build_limits)
        self.slots: queue.Queue[int] = queue.Queue()
        self._slot_locks = claim_slots(self.jobs)  # held until this process exits
        for k in self._slot_locks:
            self.slots.put(k)
        self.workdir = Path(tempfile.mkdtemp(prefix="rtf-eval-"))
        os.chmod(self.workdir, 0o711)  # the sandbox uids must traverse it to reach their own dirs

    def close(self) -> None:
        if not os.environ.get("RTF_KEEP_WORK"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        for fh in self._slot_locks.values():
            fh.close()

    def evaluate(self, items: list[Sample | InputProblem]) -> list[dict]:
        self.ws.warm()
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            return list(pool.map(self._evaluate_one, items))

    # ---- one sample -------------------------------------------------------------------------
    def _evaluate_one(self, item: Sample | InputProblem) -> dict:
        start = time.monotonic()
        rec = empty_record(item.id, item.line)
        if isinstance(item, InputProblem):
            rec["failure"] = "input"
            rec["reasons"].append("input problem: " + item.problem)
            return rec
        slot = self.slots.get()
        sample_dir = self.workdir / f"{item.line:06d}-{_safe_name(item.id)}"
        try:
            self._evaluate_sample(item, rec, sample_dir, sandbox_uid(slot))
        except Exception as exc:  # a harness bug must show in the verdict, not kill the run
            rec["failure"] = rec["failure"] or "internal"
            rec["reasons"].append(f"internal error: {type(exc).__name__}: {exc} | "
                                  + traceback.format_exc(limit=3).replace("\n", " ")[-400:])
        finally:
            self.slots.put(slot)
            if not os.environ.get("RTF_KEEP_WORK"):
                shutil.rmtree(sample_dir, ignore_errors=True)
        rec["seconds"] = round(time.monotonic() - start, 3)
        return rec

    def _evaluate_sample(self, s: Sample, rec: dict, sample_dir: Path, uid: int) -> None:
        reasons = rec["reasons"]
        rec["categories"] = rust_ast.function_categories(s.function_code)
        facts = assertions.analyse(s.generated_tests, s.function_code)
        rec["assertions"] = facts.assertions
        rec["test_names"] = {"count": facts.test_names["count"], "descriptive": facts.test_names["descriptive"]}
        rec["has_comments"] = facts.has_comments
        rec["proptest_strategies"] = facts.proptest_strategies
        rec["edge_cases"] = facts.edge_cases
        if facts.assertions["count"] == 0:
            reasons.append("weak tests: no assertion")
        if facts.assertions["trivial"] or facts.assertions["tautological"]:
            reasons.append(f"weak tests: {facts.assertions['trivial']} trivial and "
                           f"{facts.assertions['tautological']} tautological assertions")
        if s.reference_tests:
            rec["bleu4"] = codebleu.bleu4(s.generated_tests, s.reference_tests)
            rec["codebleu"], rec["codebleu_components"] = codebleu.codebleu(s.generated_tests, s.reference_tests)

        refused = refusal(s.generated_tests) or refusal(s.function_code)
        layout = assemble(s.function_code, s.generated_tests)
        self.ws.prepare(sample_dir, layout.source, uid)
        fmt = self.ws.rustfmt(sample_dir, uid=uid)
        rec["parses"] = fmt.returncode == 0
        if not rec["parses"]:
            rec["failure"] = "timeout" if fmt.timed_out else "parse"
            reasons.append(f"parse error ({_first_syntax_error(layout.source)} of the assembled crate): "
                           + (fmt.problem(self.options.build_limits) or fmt.stderr.strip()[:800]))
            return
        if rust_ast.has_syntax_errors(rust_ast.parse(layout.source)):
            reasons.append("note: tree-sitter-rust did not parse all of it; static analysis may be incomplete")
        if refused:
            rec["failure"] = "refused"
            reasons.append(refused)
            return

        t = time.monotonic()
        build = self.ws.build_tests(sample_dir, uid=uid, coverage=self.options.coverage)
        rec["timings"]["build"] = round(time.monotonic() - t, 3)
        if not build.success or build.executable is None:
            problem = build.run.problem(self.options.build_limits)
            rec["failure"] = "timeout" if build.run.timed_out else ("output" if problem else "compile")
            reasons.append("compile error: " + (problem or build.error_text()))
            return
        rec["compiles"] = True
        rec["links"] = facts.calls_function
        if not facts.calls_function:
            reasons.append("tests never call the function under test")

        t = time.monotonic()
        seconds = self._run_tests(build.executable, sample_dir, uid, rec)
        rec["timings"]["test"] = round(time.monotonic() - t, 3)
        if self.options.coverage:
            t = time.monotonic()
            self._coverage(build.executable, sample_dir, uid, layout, s.function_code, rec)
            rec["timings"]["coverage"] = round(time.monotonic() - t, 3)
        if self.toolchain.has_clippy:
            t = time.monotonic()
            self._clippy(sample_dir, uid, layout, rec)
            rec["timings"]["clippy"] = round(time.monotonic() - t, 3)
        else:
            reasons.append("clippy not installed (rustup component add clippy): clippy_warnings is null")
        t = time.monotonic()
        self._mutation(s, sample_dir, uid, seconds, rec)
        rec["timings"]["mutation"] = round(time.monotonic() - t, 3)

    def _run_tests(self, exe: Path, sample_dir: Path, uid: int, rec: dict) -> float:
        lim = self.options.test_limits
        env = test_env(sample_dir / "run") | {"LLVM_PROFILE_FILE": str(sample_dir / "prof" / "%p-%m.profraw")}
        run = run_sandboxed([str(exe)], cwd=sample_dir / "run", uid=uid, limits=lim, env=env)
        results = _RESULT_LINE.findall(run.stdout)
        rec["tests_run"] = sum(1 for _, outcome in results if outcome != "ignored")
        rec["failing_tests"] = [name for name, outcome in results if outcome == "FAILED"]
        problem = run.problem(lim)
        if problem:
            rec["failure"] = "timeout" if run.timed_out else "output"
            rec["reasons"].append("tests: " + problem)
        elif rec["failing_tests"]:
            rec["failure"] = "test_failure"
            rec["reasons"].append("failing tests: " + ", ".join(rec["failing_tests"]))
        elif run.returncode != 0:
            rec["failure"] = "test_failure"
            rec["reasons"].append(f"test binary exited with status {run.returncode}: "
                                  + (run.stderr.strip() or run.stdout.strip())[-400:])
        elif rec["tests_run"] == 0:
            rec["failure"] = "no_tests"
            rec["reasons"].append("no test ran (no #[test] function or proptest! case found by the harness)")
        else:
            rec["passes"] = True
        return run.seconds

    def _coverage(self, exe: Path, sample_dir: Path, uid: int, layout: Layout, function_code: str, rec: dict) -> None:
        tc = self.toolchain
        with_tests, why = cov.measure(tc.llvm_profdata, tc.llvm_cov, exe, sample_dir / "prof", cwd=sample_dir / "run",
                                      uid=uid, lines=layout.function_lines)
        if with_tests is None:
            rec["reasons"].append("coverage: " + why)
            return
        # Baseline: the same instrumented binary with a filter that selects no test.
        env = test_env(sample_dir / "run") | {"LLVM_PROFILE_FILE": str(sample_dir / "prof-base" / "%p-%m.profraw")}
        run_sandboxed([str(exe), "--exact", NO_TEST_FILTER], cwd=sample_dir / "run", uid=uid,
                      limits=self.options.test_limits, env=env)
        base, why = cov.measure(tc.llvm_profdata, tc.llvm_cov, exe, sample_dir / "prof-base", cwd=sample_dir / "run",
                                uid=uid, lines=layout.function_lines)
        branchy = cov.has_branch_points(function_code)
        rec["line_coverage"] = with_tests.line
        rec["branch_coverage"] = cov.branch_ratio(with_tests, branchy)
        rec["function_lines"] = with_tests.lines_total
        rec["function_branches"] = with_tests.branches_total if with_tests.branches_total or not branchy else None
        if not branchy:
            rec["reasons"].append("branch coverage: the function has no branch (null)")
        elif not with_tests.branches_total:
            rec["reasons"].append("branch coverage: the function never ran, so its branches count as uncovered (0.0)")
        if base is None:
            rec["reasons"].append("baseline coverage: " + why)
        else:
            rec["baseline_line_coverage"] = base.line
            rec["baseline_branch_coverage"] = cov.branch_ratio(base, branchy)

    def _clippy(self, sample_dir: Path, uid: int, layout: Layout, rec: dict) -> None:
        result = self.ws.clippy(sample_dir, uid=uid)
        problem = result.run.problem(self.options.build_limits)
        if problem or not result.success:
            rec["reasons"].append("clippy did not finish: " + (problem or result.error_text(300)))
            return
        lo, hi = layout.tests_bytes
        warnings = [d for d in result.diagnostics if d.level == "warning" and d.spans
                    and any(lo <= start < hi for start, _ in d.spans)]
        rec["clippy_warnings"] = len(warnings)
        if warnings:
            names = sorted({d.message for d in warnings})
            rec["reasons"].append(f"clippy: {len(warnings)} warnings in the tests: " + "; ".join(names)[:400])

    def _mutation(self, s: Sample, sample_dir: Path, uid: int, seconds: float, rec: dict) -> None:
        if not self.options.mutation:
            rec["reasons"].append("mutation not run: disabled (--no-mutation)")
            return
        if not rec["passes"]:
            rec["reasons"].append("mutation not run: the tests do not pass on the original function")
            return
        result = run_schema(self.ws, sample_dir, s.function_code, s.generated_tests, uid=uid,
                            limits=self.options.test_limits, original_seconds=seconds)
        rec["reasons"] += result.notes
        if not result.ran:
            rec["reasons"].append(result.reason)
            return
        rec["mutants"] = result.summary()
        rec["mutation_score"] = result.score
        if result.score is None:
            rec["reasons"].append("mutation score undefined: every mutant was unviable")
        for k, verdict in sorted(result.verdicts.items()):
            if verdict in ("survived", "timeout"):
                rec["reasons"].append(f"mutant {verdict}: {result.descriptions[k]}")


def evaluate_samples(samples: list[dict] | Path | str, out_dir: Path | str, *, jobs: int | None = None,
                     mutation: bool = True, coverage: bool = True, timeout: float = 30.0,
                     build_timeout: float = 120.0) -> dict:
    """Evaluate samples (a list of dicts or a samples.jsonl path); write and return the summary.

    Raises ToolchainMissing when cargo, llvm-22 or the sandbox tools are unavailable.
    """
    toolchain = find_toolchain()
    check_sandbox(toolchain)
    items = read_samples(Path(samples)) if isinstance(samples, (str, Path)) else from_dicts(samples)
    options = Options(mutation=mutation, coverage=coverage, test_timeout=timeout, build_timeout=build_timeout)
    evaluator = Evaluator(toolchain, jobs or os.cpu_count() or 1, options)
    t0 = time.monotonic()
    try:
        records = evaluator.evaluate(items)
    finally:
        evaluator.close()
    summary = summarize(records)
    summary["wall_seconds"] = round(time.monotonic() - t0, 3)
    summary["jobs"] = evaluator.jobs
    summary["toolchain"] = toolchain.rustc_version
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "samples.jsonl", "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary

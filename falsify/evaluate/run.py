"""Evaluate every sample: run each through the stages, in a pool of sandbox slots, and write the outputs.

The stages of one sample (`Evaluator.judge`), each in the module named for it: static
analysis (assertions, codebleu), prepare the crate (prepare: a throwaway crate, or a copy
of the sample's real crate) and check that it parses, build (crate), run the tests and
rerun a passing sample (libtest), measure coverage (coverage), clippy (crate), mutate
(mutation_runner). Each stage hands its outcome to a `verdict.record_*` function, which
fills the sample's record; a stage that fails ends the sample.

One sample = one thread of the pool holding one sandbox slot (its own uid and crate
directory); the threads mostly wait on subprocesses, so a thread pool is enough.
"""

from __future__ import annotations

import fcntl
import os
import queue
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from trainer.files import write_json_atomic, write_jsonl_atomic

from .coverage import measure_function
from .crate import BUILD_LIMITS, Workspace, compiled_sources, first_syntax_error
from .crate_template import CrateTemplates
from .libtest import run_each_alone, run_tests
from .libtest_report import declared_test_names
from .mutation_runner import run_schema
from .prepare import PreparedCrate, in_crate_place, prepare_in_crate, prepare_standalone
from .samples import InputProblem, Sample, from_dicts, read_samples
from .sandbox import Limits, run_sandboxed, sandbox_uid
from .summary import SUMMARY_FILE, Summary, summarize
from .toolchain import Toolchain, ToolchainMissing, find_toolchain
from .verdict import (
    SAMPLES_FILE,
    SampleRecord,
    empty_record,
    record_build,
    record_clippy,
    record_coverage,
    record_input_problem,
    record_internal_error,
    record_mutation,
    record_not_in_build,
    record_parse,
    record_refusal,
    record_reruns,
    record_static_analysis,
    record_tests,
    timed,
)


@dataclass(frozen=True)
class Options:
    mutation: bool = True
    coverage: bool = True
    test_timeout: float = 30.0
    build_timeout: float = 120.0
    reruns: int = 3          # test runs of a passing sample, in all; one that fails any of them is flaky
    static_refusal: bool = True  # off only in tests that prove the run-time layers catch what it would refuse
    disk_limit_mb: int = 256  # what one test run may write (its run and profile dirs together); more: `disk_limit`

    @property
    def test_limits(self) -> Limits:
        return Limits(wall_s=self.test_timeout, cpu_s=int(self.test_timeout) + 1, memory_bytes=2 << 30,
                      file_bytes=64 << 20, open_files=256, processes=64, output_bytes=1 << 20,
                      disk_bytes=self.disk_limit_mb << 20)

    @property
    def build_limits(self) -> Limits:
        return replace(BUILD_LIMITS, wall_s=self.build_timeout, cpu_s=int(2 * self.build_timeout))


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
        fh = open(SLOT_DIR / f"{k}.lock", "w")  # noqa: SIM115  (stays open: the flock lasts as long as the file)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        held[k] = fh
        if len(held) == n:
            return held
    raise ToolchainMissing(f"no free sandbox slot in {SLOT_DIR} ({MAX_SLOTS} are held by other evaluator processes)")


class SandboxSlots:
    """The slots this process holds (see claim_slots), lent to one running sample at a time."""

    def __init__(self, n: int):
        self._locks = claim_slots(n)  # held until release()
        self._free: queue.Queue[int] = queue.Queue()
        for k in self._locks:
            self._free.put(k)

    @contextmanager
    def lend(self) -> Iterator[int]:
        """A free slot for the `with` block (waits for one)."""
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)

    def release(self) -> None:
        for fh in self._locks.values():
            fh.close()


@contextmanager
def claimed_uid() -> Iterator[int]:
    """One sandbox uid that no other evaluator process holds, for the `with` block (the start-up probe, tests, benches):
    every run kills its uid's processes wholesale, so a uid used without its slot's claim breaks another run's builds."""
    slots = SandboxSlots(1)
    try:
        with slots.lend() as slot:
            yield sandbox_uid(slot)
    finally:
        slots.release()


def check_sandbox() -> None:
    """The sandbox needs root (namespaces, setpriv): fail at start, not per sample."""
    if os.geteuid() != 0:
        raise ToolchainMissing("the sandbox needs root to create namespaces and drop to an unprivileged uid; run as root")
    probe = Path(tempfile.mkdtemp(prefix="rtf-probe-"))
    try:
        os.chmod(probe, 0o755)
        with claimed_uid() as uid:
            run = run_sandboxed(["true"], cwd=probe, uid=uid, limits=Limits(wall_s=10), env={"PATH": "/usr/bin:/bin"})
        if run.returncode != 0:
            raise ToolchainMissing("sandbox unavailable: `unshare --net --mount --pid` + `setpriv` failed: "
                                   + run.stderr.strip()[-200:] + " (install util-linux; run as root)")
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40]


def _keep_work() -> bool:
    return bool(os.environ.get("RTF_KEEP_WORK"))  # keep the temp crates for debugging


class Evaluator:
    """One evaluation run: the toolchain, the cache workspace, the sandbox slots and the work directory."""

    def __init__(self, toolchain: Toolchain, jobs: int, options: Options):
        self.toolchain = toolchain
        self.jobs = max(1, jobs)
        self.options = options
        cpus = os.cpu_count() or 1
        self.ws = Workspace(toolchain, cargo_jobs=max(1, cpus // self.jobs), build_limits=options.build_limits)
        self.slots = SandboxSlots(self.jobs)
        self.workdir = Path(tempfile.mkdtemp(prefix="rtf-eval-"))
        os.chmod(self.workdir, 0o711)  # the sandbox uids must traverse it to reach their own dirs
        self.templates = CrateTemplates(self.ws, self.workdir / "crate-templates", coverage=options.coverage)

    def close(self) -> None:
        if not _keep_work():
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.slots.release()

    def evaluate(self, items: list[Sample | InputProblem]) -> list[SampleRecord]:
        self.ws.warm()
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            return list(pool.map(self._evaluate_one, items))

    def _evaluate_one(self, item: Sample | InputProblem) -> SampleRecord:
        start = time.monotonic()
        rec = empty_record(item.id, item.line)
        if isinstance(item, InputProblem):
            record_input_problem(rec, item.problem)
            return rec
        sample_dir = self.workdir / f"{item.line:06d}-{_safe_name(item.id)}"
        with self.slots.lend() as slot:
            try:
                self.judge(item, rec, sample_dir, sandbox_uid(slot))
            except Exception as exc:  # a harness bug must show in the verdict, not kill the run
                record_internal_error(rec, f"{type(exc).__name__}: {exc} | "
                                      + traceback.format_exc(limit=3).replace("\n", " ")[-400:])
            finally:
                if not _keep_work():
                    shutil.rmtree(sample_dir, ignore_errors=True)
        rec["seconds"] = round(time.monotonic() - start, 3)
        return rec

    def judge(self, s: Sample, rec: SampleRecord, sample_dir: Path, uid: int) -> None:
        """Run the stages of one sample in order, in `sample_dir` as `uid`; a failed stage ends it."""
        opts, ws = self.options, self.ws
        facts = record_static_analysis(rec, s)
        if s.crate is None:
            crate = prepare_standalone(ws, s, sample_dir, uid)
        elif (prepared := prepare_in_crate(ws, self.templates, s, rec, sample_dir, uid)) is not None:
            crate = prepared
        else:
            return
        rustfmt = ws.rustfmt(sample_dir, uid=uid, file=crate.parse_file, edition=crate.edition)
        if not record_parse(rec, rustfmt, first_syntax_error(crate.parse_source), opts.build_limits):
            return
        if opts.static_refusal and crate.refused:
            record_refusal(rec, crate.refused)
            return
        with timed(rec, "build"):
            build = ws.build_tests(sample_dir, uid=uid, coverage=opts.coverage, lint=True, target=crate.target)
        if rec["crate"] is not None:
            rec["crate"] |= {"dependencies_fresh": build.units(fresh=True), "dependencies_compiled": build.units(fresh=False)}
        if not record_build(rec, build, facts.calls_function, opts.build_limits):
            return
        sources = compiled_sources(build.executable) if crate.target.in_crate else None  # read before any test runs
        with timed(rec, "test"):
            declared = frozenset(declared_test_names(s.generated_tests))  # the listing must hold these
            report = run_tests(build.executable, sample_dir, uid=uid, limits=opts.test_limits, name_filter=crate.test_filter,
                               declared=declared)
            record_tests(rec, report, opts.test_limits)
            if rec["failure"] == "no_tests" and sources is not None and crate.target.file not in sources:
                record_not_in_build(rec, crate.target.file, crate.target.features)
                return
            if rec["passes"] and opts.reruns > 1:
                record_reruns(rec, [run_tests(build.executable, sample_dir, uid=uid, limits=opts.test_limits,
                                              name_filter=crate.test_filter, profiles="prof-rerun", declared=declared)
                                    for _ in range(opts.reruns - 1)], opts.test_limits)
            if rec["passes"]:  # last: a test that needs what an earlier run left behind is flaky, found by the reruns
                record_reruns(rec, [], opts.test_limits, alone=run_each_alone(
                    build.executable, sample_dir, report.passed_tests, uid=uid, limits=opts.test_limits))
        if opts.coverage:
            with timed(rec, "coverage"):
                record_coverage(rec, measure_function(self.toolchain, build.executable, sample_dir, uid=uid,
                                                      lines=crate.function_lines, function_code=s.function_code,
                                                      limits=opts.test_limits, source_file=crate.target.file,
                                                      generated_module=crate.test_filter))
        if build.linted:  # clippy ran in the build
            record_clippy(rec, build, crate.tests_bytes, opts.build_limits)
        elif self.toolchain.has_clippy:
            rec["reasons"].append("clippy failed on this code (a denied clippy lint or a clippy crash); "
                                  "built without it: clippy_warnings is null")
        else:
            rec["reasons"].append("clippy not installed (rustup component add clippy): clippy_warnings is null")
        with timed(rec, "mutation"):
            self._mutate(s, rec, crate, sample_dir, uid, report.run.seconds)

    def _mutate(self, s: Sample, rec: SampleRecord, crate: PreparedCrate, sample_dir: Path, uid: int,
                original_seconds: float) -> None:
        """The mutation stage: a score only where it was really measured; otherwise the reason, never a fake score."""
        opts = self.options
        if not opts.mutation:
            rec["reasons"].append("mutation not run: disabled (--no-mutation)")
        elif not rec["passes"]:
            rec["reasons"].append("mutation not run: the tests do not pass on the original function")
        else:
            place = in_crate_place(crate.copy, sample_dir) if crate.copy is not None else None
            record_mutation(rec, run_schema(self.ws, sample_dir, s.function_code, s.generated_tests, uid=uid,
                                            limits=opts.test_limits, original_seconds=original_seconds, place=place))


def evaluate_samples(samples: list[dict] | Path | str, out_dir: Path | str, *, jobs: int | None = None,
                     mutation: bool = True, coverage: bool = True, timeout: float = 30.0,
                     build_timeout: float = 120.0, reruns: int = 3, static_refusal: bool = True,
                     disk_limit_mb: int = 256) -> Summary:
    """Evaluate samples (a list of dicts or a samples.jsonl path); write and return the summary.

    Raises ToolchainMissing when cargo, llvm-22 or the sandbox tools are unavailable.
    """
    toolchain = find_toolchain()
    check_sandbox()
    items = read_samples(Path(samples)) if isinstance(samples, (str, Path)) else from_dicts(samples)
    options = Options(mutation=mutation, coverage=coverage, test_timeout=timeout, build_timeout=build_timeout,
                      reruns=max(1, reruns), static_refusal=static_refusal, disk_limit_mb=disk_limit_mb)
    evaluator = Evaluator(toolchain, jobs or os.cpu_count() or 1, options)
    t0 = time.monotonic()
    try:
        records = evaluator.evaluate(items)
    finally:
        evaluator.close()
    summary = summarize(records, wall_seconds=round(time.monotonic() - t0, 3), jobs=evaluator.jobs,
                        toolchain=toolchain.rustc_version, test_runs=options.reruns)
    out = Path(out_dir)
    write_jsonl_atomic(out / SAMPLES_FILE, records)
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary

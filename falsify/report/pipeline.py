"""The report's pipeline: train twice, generate, evaluate, run the falsifiers; each a subprocess.

A stage is a command line (or, for cheap file preparation, a Python callable) plus the
files that show it already ran. Subprocesses contain crashes: a failed stage is recorded
with the last line of its log, the stages that need it are skipped with that reason, and
the scorecard marks the items they would have fed as "not run". A rich progress display
shows the stage, and a bar with an ETA where a stage's progress can be read from its
output files (training steps in metrics.sqlite, generated samples so far).

Samples are in-crate by default (they carry `crate`, so the evaluator builds each inside its
real crate); a plan made with `standalone=True` writes today's standalone samples instead,
into directories of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from falsify.evaluate.summary import SUMMARY_FILE
from falsify.evaluate.verdict import SAMPLES_FILE
from falsify.report.evidence import ReportError
from trainer.corpus.in_crate import appended_tests, has_location, in_crate_sample, without_location
from trainer.experiment import ExperimentPaths
from trainer.files import iter_jsonl, write_atomic, write_jsonl_atomic
from trainer.monitor.store import StoreError, StoreReader

CORPUS = Path("experiments/corpus")
CRATE_SOURCE = Path("/usr/share/cargo/registry")
DEFAULT_CONFIG = "smollm2-qlora"  # the real base model (its model.path names DEFAULT_MODEL); tiny-* stay for tests and CI
DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_EXPERIMENT = Path("experiments/smollm2-qlora")
REFERENCE_DIR = Path("experiments/reference")


@dataclass
class Stage:
    name: str
    command: list[str] | None = None
    action: Callable[[], None] | None = None      # in-process alternative to `command`
    done: Callable[[], str | None] | None = None   # returns why the stage can be reused, or None
    progress: Callable[[], tuple[int, int] | None] | None = None
    needs: list[str] = field(default_factory=list)
    ok_codes: tuple[int, ...] = (0,)
    check_output: Path | None = None               # must exist after a successful run


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "reused" | "failed" | "skipped"
    seconds: float
    command: str
    reason: str = ""
    log: str | None = None


@dataclass
class Plan:
    """What the report scores, and the stages that produce it."""

    generator: str
    experiment: Path | None
    repeat: Path | None
    eval_dir: Path
    samples: Path
    falsifiers: Path | None
    holdout: Path
    stages: list[Stage]
    standalone: bool = False  # True: samples without `crate`, each function built alone (--standalone)
    base_eval_dir: Path | None = None  # the base model's zero-shot tests, evaluated the same way (None: not compared)
    first_eval_dir: Path | None = None  # with a critic: each function's first candidate, evaluated (None: no reranking)

    @property
    def base_sample_results(self) -> Path | None:
        return None if self.base_eval_dir is None else self.base_eval_dir / SAMPLES_FILE

    @property
    def first_sample_results(self) -> Path | None:
        return None if self.first_eval_dir is None else self.first_eval_dir / SAMPLES_FILE

    @property
    def summary(self) -> Path:
        return self.eval_dir / SUMMARY_FILE

    @property
    def sample_results(self) -> Path:
        """The evaluator's per-sample records (`samples` is its input: the generated tests)."""
        return self.eval_dir / SAMPLES_FILE

    @property
    def generation_summary(self) -> Path:
        from trainer.generate import generation_summary_path  # here: trainer.generate imports torch

        return generation_summary_path(self.samples)


# ---------------------------------------------------------------- progress readers

def training_progress(root: Path) -> Callable[[], tuple[int, int] | None]:
    """(last step, total steps) from the run's metric store, or None while it cannot say."""
    store = ExperimentPaths(root).store
    seen = 0  # read only the step rows after the last poll's: a long run has many

    def read():
        nonlocal seen
        if not store.is_file():
            return None
        try:
            reader = StoreReader(store, timeout=0.2)
            try:
                snap = reader.read(after_step=seen)
            finally:
                reader.close()
        except StoreError:
            return None  # the trainer is creating or replacing it; try again at the next poll
        seen = snap.last_step
        total = snap.meta.get("total_steps")
        return (snap.last_step, int(total)) if total is not None else None
    return read


def _partial_output(samples: Path) -> Path:
    from trainer.generate import partial_output_path  # here: trainer.generate imports torch

    return partial_output_path(samples)


def _first_candidates(samples: Path) -> Path:
    from trainer.generate import first_candidates_path  # here: trainer.generate imports torch

    return first_candidates_path(samples)


def lines_progress(paths: list[Path], total: int) -> Callable[[], tuple[int, int] | None]:
    def read():
        for p in paths:
            if p.is_file():
                with p.open("rb") as fh:
                    return sum(1 for _ in fh), total
        return 0, total
    return read


# ---------------------------------------------------------------- plans

def _reuse_run(root: Path) -> Callable[[], str | None]:
    metrics = ExperimentPaths(root).metrics

    def done():
        return f"{metrics} exists" if metrics.is_file() else None
    return done


def _reuse_file(path: Path, newer_than: Path | None = None) -> Callable[[], str | None]:
    def done():
        if not path.is_file():
            return None
        if newer_than is not None and newer_than.is_file() and path.stat().st_mtime < newer_than.stat().st_mtime:
            return None
        return f"{path} exists"
    return done


def _never() -> Callable[[], str | None]:
    return lambda: None


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def corpus_stage(holdout: Path) -> Stage:
    return Stage("corpus", _py("-m", "trainer", "corpus", "build", "--source", str(CRATE_SOURCE), "--out", str(holdout.parent)),
                 done=_reuse_file(holdout), check_output=holdout)


def _train(config: str | Path, root: Path, mode: str) -> list[str]:
    return _py("-m", "trainer", "train", "--config", str(config), "--output", str(root), mode)


def _evaluate(samples: Path, eval_dir: Path) -> list[str]:
    return _py("-m", "falsify.evaluate", "--samples", str(samples), "--out", str(eval_dir))


def _standalone_dir(eval_dir: Path) -> Path:
    """Standalone evidence lives apart, so neither mode reuses the other's samples or summary."""
    return eval_dir.with_name(eval_dir.name + "-standalone")


def write_standalone_holdout(holdout: Path, out: Path) -> None:
    """The holdout without crate locations: the generator then writes standalone samples."""
    records = []
    for line in iter_jsonl(holdout):
        if line.problem is not None:
            raise ReportError(f"{holdout}: {line.problem}")
        records.append(without_location(line.value) if isinstance(line.value, dict) else line.value)
    write_jsonl_atomic(out, records, sort_keys=True)


@dataclass(frozen=True)
class Rerank:
    """Generate `candidates` samples per function at `temperature` and keep the one `critic` rates best."""

    critic: Path
    candidates: int
    temperature: float

    def generate_args(self) -> tuple[str, ...]:
        return ("--candidates", str(self.candidates), "--critic", str(self.critic), "--temperature", str(self.temperature))


def model_plan(experiment: Path | None, *, limit: int, tiers: list[str], holdout: Path = CORPUS / "holdout.jsonl",
               standalone: bool = False, compare_base: bool = True, rerank: Rerank | None = None) -> Plan:
    """Train twice with the same seed, generate, evaluate, run the falsifiers; reuse what `experiment` already has.

    In-crate by default: the generator's samples carry `crate`. `standalone`: they do not
    (today's shape), and they and their evaluation go to `evaluation-standalone/`.
    `compare_base`: the base model (no adapter) also writes tests for the same functions,
    evaluated into `evaluation-base/`, so the report can say whether the fine-tune helped.
    `rerank`: the tuned generator draws N candidates and a critic keeps one; the scored
    samples are those (`evaluation-reranked/`), and each function's first candidate is
    evaluated too (`evaluation-first/`), so the report can say whether reranking helped.
    """
    fresh = experiment is None
    run_a = ExperimentPaths(DEFAULT_EXPERIMENT if fresh else Path(experiment))
    run_b = ExperimentPaths(run_a.root.with_name(run_a.root.name + "-repeat"))

    def side_dir(suffix: str) -> Path:
        named = run_a.evaluation.with_name(run_a.evaluation.name + suffix)
        return _standalone_dir(named) if standalone else named

    eval_dir = side_dir("-reranked" if rerank else "")
    samples = eval_dir / "generated.jsonl"
    falsifiers = eval_dir / "falsifiers.json"
    reuse = (lambda f: _never()) if fresh else (lambda f: f)
    config = DEFAULT_CONFIG if fresh else run_a.config  # the packaged default, or run A's own resolved config
    functions = eval_dir / "holdout-standalone.jsonl" if standalone else holdout
    stages = [corpus_stage(holdout)]
    if fresh:  # the default config trains on the prepared real model: convert it once (idempotent, seconds when done)
        stages.append(Stage("model", _py("-m", "trainer", "model", "prepare", DEFAULT_MODEL)))
    stages += [
        Stage("train", _train(config, run_a.root, "--overwrite" if fresh else "--resume"), done=reuse(_reuse_run(run_a.root)),
              progress=training_progress(run_a.root), needs=["corpus", *(["model"] if fresh else [])], check_output=run_a.metrics),
        Stage("train-repeat", _train(config, run_b.root, "--overwrite"), done=reuse(_reuse_run(run_b.root)),
              progress=training_progress(run_b.root), needs=["corpus", *(["model"] if fresh else [])], check_output=run_b.metrics),
    ]
    if standalone:
        stages.append(Stage("standalone-holdout", action=lambda: write_standalone_holdout(holdout, functions), needs=["corpus"],
                            check_output=functions))
    needs = ["train", *(["standalone-holdout"] if standalone else [])]

    def generate_and_evaluate(suffix: str, checkpoint: str, out_dir: Path, extra: tuple[str, ...] = ()) -> list[Stage]:
        """Two stages: `trainer generate` from `checkpoint` into out_dir, then the evaluator over it."""
        out, done = out_dir / "generated.jsonl", out_dir / SUMMARY_FILE
        # --allow-rejected: the report is what judges the adapter, so an earlier rejection must not stop it.
        command = _py("-m", "trainer", "generate", "--experiment", str(run_a.root), "--checkpoint", checkpoint, "--allow-rejected",
                      "--input", str(functions), "--out", str(out), "--limit", str(limit), *extra)
        return [Stage(f"generate{suffix}", command, done=reuse(_reuse_file(out)), needs=needs, check_output=out,
                      progress=lines_progress([_partial_output(out), out], limit)),
                Stage(f"evaluate{suffix}", _evaluate(out, out_dir), done=reuse(_reuse_file(done, newer_than=out)),
                      needs=[f"generate{suffix}"], check_output=done)]  # the evaluator writes nothing until it is done: no ETA

    stages += generate_and_evaluate("", "best", eval_dir, rerank.generate_args() if rerank else ())
    first_eval_dir = side_dir("-first") if rerank else None
    if first_eval_dir is not None:  # the first candidates come from the generate stage above
        first, done = _first_candidates(eval_dir / "generated.jsonl"), first_eval_dir / SUMMARY_FILE
        stages.append(Stage("evaluate-first", _evaluate(first, first_eval_dir), done=reuse(_reuse_file(done, newer_than=first)),
                            needs=["generate"], check_output=done))
    base_eval_dir = side_dir("-base") if compare_base else None
    if base_eval_dir is not None:
        stages += generate_and_evaluate("-base", "base", base_eval_dir)
    if tiers:
        # pytest exits 1 when some falsifier fails: that is evidence, not a broken stage.
        stages.append(Stage("falsifiers", _py("-m", "pytest", "contracts", "-m", " or ".join(tiers), "--falsify-results",
                                              str(falsifiers), "-p", "no:cacheprovider", "-q"),
                            done=reuse(_reuse_file(falsifiers)), ok_codes=(0, 1), check_output=falsifiers))
    return Plan("model", run_a.root, run_b.root, eval_dir, samples, falsifiers if tiers else None, holdout, stages, standalone,
                base_eval_dir, first_eval_dir)


def reference_sample(rec: dict, line: int, source: Path, *, standalone: bool = False) -> dict:
    """One corpus record's own tests as a sample. In-crate (a record that says where its
    function is, unless `standalone`): `function_code` verbatim from the crate file, `crate`,
    and the tests as the appended module's body, with the `use` lines they need."""
    meta = rec.get("metadata") or {}
    sample = {"id": str(meta.get("id") or f"holdout-{line}"), "function_code": rec["input"],
              "generated_tests": rec["output"], "reference_tests": rec["output"],
              "metadata": {**meta, "generation": {"generator": "reference", "source": str(source)}}}
    if not standalone and has_location(meta):
        sample.update(in_crate_sample(meta, rec["input"]))
        sample["generated_tests"] = appended_tests(meta, rec["output"])
    return sample


def write_reference_samples(holdout: Path, out: Path, limit: int, *, standalone: bool = False) -> None:
    """The corpus's own tests as if generated: same evaluator, the rubric's 'top' for comparison."""
    rows = []
    for line in iter_jsonl(holdout):
        if line.problem is not None:
            raise ReportError(f"{holdout}: {line.problem}")
        rec = line.value
        if not isinstance(rec, dict) or not isinstance(rec.get("input"), str) or not isinstance(rec.get("output"), str):
            raise ReportError(f"{holdout}:{line.line}: a corpus record needs string fields 'input' and 'output'")
        rows.append(reference_sample(rec, line.line, holdout, standalone=standalone))
        if len(rows) >= limit:
            break
    write_atomic(out, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))  # as the generator writes its samples


def reference_plan(experiment: Path | None, *, limit: int, holdout: Path = CORPUS / "holdout.jsonl", standalone: bool = False) -> Plan:
    eval_dir = (Path(experiment) / "evaluation-reference") if experiment else REFERENCE_DIR / "evaluation"
    eval_dir = _standalone_dir(eval_dir) if standalone else eval_dir
    samples = eval_dir / "generated.jsonl"
    stages = [
        corpus_stage(holdout),
        Stage("reference-samples", action=lambda: write_reference_samples(holdout, samples, limit, standalone=standalone),
              needs=["corpus"], check_output=samples),
        Stage("evaluate", _evaluate(samples, eval_dir),
              done=_reuse_file(eval_dir / SUMMARY_FILE, newer_than=samples) if experiment else _never(),
              needs=["reference-samples"], check_output=eval_dir / SUMMARY_FILE),
    ]
    return Plan("reference", None, None, eval_dir, samples, None, holdout, stages, standalone)


# ---------------------------------------------------------------- running

def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_stage(stage: Stage, log: Path, on_tick: Callable[[], None] = lambda: None, poll_s: float = 0.2) -> StageResult:
    started = time.monotonic()
    shown = " ".join(stage.command) if stage.command else f"(in-process) {stage.name}"
    if stage.action is not None:
        try:
            stage.action()
        except Exception as exc:
            return StageResult(stage.name, "failed", time.monotonic() - started, shown, f"{type(exc).__name__}: {exc}")
        return StageResult(stage.name, "ran", time.monotonic() - started, shown)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(stage.command, stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                on_tick()
                time.sleep(poll_s)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
            raise
    seconds = time.monotonic() - started
    if proc.returncode not in stage.ok_codes:
        return StageResult(stage.name, "failed", seconds, shown, f"exit {proc.returncode}: {_last_line(log)}", str(log))
    if stage.check_output is not None and not stage.check_output.exists():
        reason = f"exit {proc.returncode} but {stage.check_output} was not written"
        return StageResult(stage.name, "failed", seconds, shown, reason, str(log))
    return StageResult(stage.name, "ran", seconds, shown, f"exit {proc.returncode}", str(log))


def run_stages(stages: list[Stage], log_dir: Path, console: Console | None = None) -> list[StageResult]:
    """Run (or reuse) each stage in order; a failure skips the stages that need it."""
    console = console or Console(stderr=True)
    results: dict[str, StageResult] = {}
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        for stage in stages:
            blocked = [n for n in stage.needs if n in results and results[n].status in ("failed", "skipped")]
            if blocked:
                why = f"needs stage {blocked[0]}, which {results[blocked[0]].status}"
                results[stage.name] = StageResult(stage.name, "skipped", 0.0, "", why)
                console.print(f"[yellow]skip[/] {stage.name}: {results[stage.name].reason}")
                continue
            reuse = stage.done() if stage.done else None
            if reuse:
                results[stage.name] = StageResult(stage.name, "reused", 0.0, "", reuse)
                console.print(f"[cyan]reuse[/] {stage.name}: {reuse}")
                continue
            task = bar.add_task(stage.name, total=None)

            def tick(task=task, stage=stage):
                got = stage.progress() if stage.progress else None
                if got:
                    bar.update(task, completed=got[0], total=max(got[1], 1))

            result = run_stage(stage, log_dir / f"{stage.name}.log", tick)
            if result.status == "ran":
                done = next(t.total for t in bar.tasks if t.id == task) or 1
                bar.update(task, completed=done, total=done)
            bar.stop_task(task)
            results[stage.name] = result
            style = "green" if result.status == "ran" else "red"
            console.print(f"[{style}]{result.status}[/] {stage.name} in {result.seconds:.1f} s {result.reason}")
    return list(results.values())

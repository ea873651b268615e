"""`python -m trainer monitor --experiment DIR`: a detached live view of a training run.

Reads the experiment's metric store (trainer.monitor.store.StoreReader: read-only, short
transactions, WAL) and draws it with trainer.monitor.view. Attach and detach at will:
the monitor holds no lock the trainer waits on, and either side can be killed.

    --once      print one plain-text frame and exit 0
    --json      print the current state as JSON and exit 0
    (default)   full-screen live view; q quits, l toggles the log scale

Exit codes: 0 (shown; a run that has not written yet is shown as status "waiting"),
2 (bad input: not an experiment directory, corrupt/locked store, unknown schema).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from trainer.errors import TrainerError
from trainer.experiment import ExperimentPaths
from trainer.monitor.store import STEP_COLUMNS, StoreReader

ROLLING_STEPS = 20  # tokens/s and ETA are averaged over this many latest steps
FINAL_STATUSES = {"finished", "stopped_by_guard", "interrupted", "failed"}


# --------------------------------------------------------------------------- reading


@dataclass
class RunHistory:
    """Everything read from the store so far; steps are fetched incrementally."""

    schema_version: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple] = field(default_factory=list)  # rows in STEP_COLUMNS order
    evals: list[tuple[int, float]] = field(default_factory=list)
    sample: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None
    eval_metrics: dict[str, Any] | None = None  # a classifier's latest evaluation metrics (with its "step")
    waiting: str | None = None  # why there is nothing to show yet

    @property
    def last_step(self) -> int:
        return self.steps[-1][0] if self.steps else 0


def check_experiment(path: Path) -> None:
    """Bad input fails here, before any screen is drawn."""
    paths = ExperimentPaths(path)
    if not path.exists():
        raise TrainerError(f"{path}: no such experiment directory")
    if not path.is_dir():
        raise TrainerError(f"{path}: not an experiment directory (it is a file; pass the directory holding {paths.store.name})")
    if not (paths.config.exists() or paths.store.exists()) and any(path.iterdir()):
        raise TrainerError(f"{path}: not an experiment directory (no {paths.config.name} or {paths.store.name})")


class RunSource:
    """Follows one experiment's store: waits for it to appear, reopens it when replaced
    (a training run with --overwrite makes a new file), and reads only new step rows."""

    def __init__(self, experiment: Path):
        self.experiment = experiment
        self.path = ExperimentPaths(experiment).store
        self.reader: StoreReader | None = None
        self.inode: tuple[int, int] | None = None
        self.history = RunHistory()

    def poll(self) -> RunHistory:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._reset()
            self.history.waiting = f"no {self.path.name} in {self.experiment} yet (the trainer creates it after loading the model)"
            return self.history
        if self.reader is None or self.inode != (st.st_dev, st.st_ino):
            self._reset()
            self.reader, self.inode = StoreReader(self.path), (st.st_dev, st.st_ino)
        h = self.history
        if not self.reader.changed() and h.schema_version is not None:
            return h  # nothing committed since the last read: no queries at all
        h.schema_version = self.reader.schema_version()
        if h.schema_version is None:
            h.waiting = f"{self.path} exists but the trainer has not written its schema yet"
            return h
        snap = self.reader.read(after_step=h.last_step)
        if snap.last_step < h.last_step:  # a resume truncated rows we had: read them again
            h.steps = []
            snap = self.reader.read(after_step=0)
        h.meta, h.evals, h.sample, h.hardware, h.eval_metrics = snap.meta, snap.evals, snap.sample, snap.hardware, snap.eval_metrics
        h.steps.extend(snap.steps)
        h.waiting = None if "status" in h.meta else "the trainer has created the store but not started the run yet"
        return h

    def _reset(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.reader, self.inode, self.history = None, None, RunHistory()

    def close(self) -> None:
        self._reset()


# --------------------------------------------------------------------------- state


def trainer_gone(meta: dict[str, Any]) -> str | None:
    """Why the recorded trainer process is certainly dead, or None (alive, or on another host)."""
    pid, host = meta.get("pid"), meta.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return f"trainer process {pid} has exited"
        started = meta.get("started_at")
        if isinstance(started, (int, float)) and proc.create_time() > started + 1:
            return f"trainer process {pid} has exited (the pid now belongs to another process)"
        return None
    except psutil.NoSuchProcess:
        return f"trainer process {pid} has exited"
    except psutil.Error:
        return None


def summarize(h: RunHistory, experiment: Path, stale_after: float, now: float | None = None) -> dict[str, Any]:
    """The run's current state as plain data: what --json prints and the view draws."""
    now = time.time() if now is None else now
    meta = h.meta
    state: dict[str, Any] = {"experiment": str(experiment), "schema_version": h.schema_version}
    if h.waiting is not None:
        state.update(status="waiting", status_detail=h.waiting)
        return state

    updated = meta.get("updated_at")
    since_write = max(0.0, now - updated) if isinstance(updated, (int, float)) else None
    status, detail = meta.get("status", "running"), meta.get("stop_reason")
    if status == "running":
        gone = trainer_gone(meta)
        if gone:
            status, detail = "stale", f"{gone} without recording an end (killed?)"
        elif since_write is not None and since_write > stale_after:
            status, detail = "stale", f"no write for {since_write:.0f} s (threshold {stale_after:g} s)"

    started, finished = meta.get("started_at"), meta.get("finished_at")
    if status in FINAL_STATUSES and isinstance(finished, (int, float)):
        end = finished
    elif status == "stale" and isinstance(updated, (int, float)):
        end = updated
    else:
        end = now
    total = meta.get("total_steps")
    per_epoch = meta.get("steps_per_epoch")
    last = dict(zip(STEP_COLUMNS, h.steps[-1])) if h.steps else {}
    window = h.steps[-ROLLING_STEPS:]
    tokens_per_s = eta = None
    if window:
        seconds = sum(row[5] / row[6] for row in window if row[6])
        tokens_per_s = sum(row[5] for row in window) / seconds if seconds else None
    if status == "running" and len(window) >= 2 and isinstance(total, int):
        seconds_per_step = (window[-1][8] - window[0][8]) / (window[-1][0] - window[0][0])  # wall clock: evals included
        eta = max(0, total - last["step"]) * seconds_per_step
    best = min(h.evals, key=lambda e: e[1]) if h.evals else None
    state.update(
        status=status, status_detail=detail, run_name=meta.get("run_name"), model=meta.get("model"),
        mode=meta.get("mode"), device=meta.get("device"), random_init=meta.get("random_init"), pid=meta.get("pid"),
        host=meta.get("host"),
        elapsed_s=end - started if isinstance(started, (int, float)) else None,
        seconds_since_write=since_write, stale_after_s=stale_after,
        step=last.get("step", 0), total_steps=total,
        epoch=last.get("epoch"), epochs_total=total / per_epoch if isinstance(total, int) and per_epoch else None,
        train_loss=last.get("loss"), lr=last.get("lr"), grad_norm=last.get("grad_norm"),
        tokens_per_s=tokens_per_s, rolling_steps=len(window), eta_s=eta,
        val_loss=h.evals[-1][1] if h.evals else None, val_step=h.evals[-1][0] if h.evals else None,
        best_val_loss=best[1] if best else None, best_val_step=best[0] if best else None,
        evals=[list(e) for e in h.evals], sample=h.sample, hardware=h.hardware,
    )
    if h.eval_metrics is not None:  # a classifier's run: its latest accuracy and macro-F1
        state.update(accuracy=h.eval_metrics.get("accuracy"), macro_f1=h.eval_metrics.get("macro_f1"),
                     metrics_step=h.eval_metrics.get("step"))
    return state


# --------------------------------------------------------------------------- terminal


class Keys:
    """Single key presses from the controlling tty, without blocking or echo (cbreak mode).

    The terminal settings are restored on exit, also after an exception. Without a tty
    (stdin redirected) `read` only waits; Ctrl-C still stops the monitor.
    """

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved = None

    def __enter__(self) -> Keys:
        if self.fd is not None:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> str:
        if self.fd is None:
            time.sleep(timeout)
            return ""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 64).decode(errors="ignore") if ready else ""


def run_live(source: RunSource, experiment: Path, refresh: float, stale_after: float, log_scale: bool) -> int:
    from rich.console import Console
    from rich.live import Live

    from trainer.monitor import view as monitor_view

    # A guest on the training machine: lower priority, so under CPU contention training wins.
    os.nice(10)
    # rich prefers exported COLUMNS/LINES to the tty's size; they go stale on resize, so drop them.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
    resized = [False]
    signal.signal(signal.SIGWINCH, lambda *_: resized.__setitem__(0, True))
    console = Console()
    next_read = 0.0
    state = None
    with Keys() as keys, Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                              redirect_stderr=False) as live:
        while True:
            now = time.monotonic()
            if now >= next_read or resized[0]:
                if now >= next_read:
                    state = summarize(source.poll(), experiment, stale_after)
                    next_read = now + refresh
                resized[0] = False
                live.update(monitor_view.frame(state, source.history, log_scale=log_scale, refresh=refresh), refresh=True)
            pressed = keys.read(max(0.0, min(0.1, next_read - time.monotonic())))
            if "q" in pressed.lower():
                return 0
            if "l" in pressed.lower():
                log_scale, next_read = not log_scale, 0.0


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    store_name = ExperimentPaths(Path()).store.name
    parser.add_argument("--experiment", required=True, help=f"the experiment directory (holds {store_name})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="print one plain-text frame and exit")
    mode.add_argument("--json", action="store_true", help="print the current state as JSON and exit")
    parser.add_argument("--refresh", type=float, default=0.5, help="seconds between reads of the store (<= 1; default 0.5)")
    parser.add_argument("--log-scale", action="store_true", help="log scale for the loss axis (l toggles it live)")
    parser.add_argument("--stale-after", type=float, default=60.0,
                        help="a running run with no write for this many seconds is shown as stale (default 60)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 0.05 <= args.refresh <= 1.0:
        print(f"error: --refresh: expected seconds between 0.05 and 1 (the view refreshes at least once a second), got {args.refresh}",
              file=sys.stderr)
        return 2
    if args.stale_after <= 0:
        print(f"error: --stale-after: expected seconds > 0, got {args.stale_after}", file=sys.stderr)
        return 2
    experiment = Path(args.experiment)
    source = RunSource(experiment)
    try:
        check_experiment(experiment)
        if not (args.once or args.json):
            return run_live(source, experiment, args.refresh, args.stale_after, args.log_scale)
        state = summarize(source.poll(), experiment, args.stale_after)
        if args.json:
            print(json.dumps(state, indent=2))
        else:
            from trainer.monitor import view as monitor_view

            width, height = shutil.get_terminal_size((120, 36))
            print(monitor_view.plain_frame(state, source.history, width, height, log_scale=args.log_scale), end="")
        return 0
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    finally:
        source.close()

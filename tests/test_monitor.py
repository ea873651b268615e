"""The detached monitor: state from the store, bad input, and the real TUI against live runs.

The slow tests start `python -m trainer train` as a separate process (as a user would) and
attach monitors to it: in tmux (real terminal, keys, resize), killed with -9, or reading
a store whose trainer was killed with -9.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import fast_config
from trainer.config import save_config
from trainer.errors import TrainerError
from trainer.monitor import live as monitor
from trainer.monitor.live import RunHistory, RunSource, summarize
from trainer.monitor.store import SCHEMA_VERSION, MetricStore, StoreReader, last_step
from trainer.monitor.view import plain_frame

ROOT = Path(__file__).resolve().parents[1]


def run_monitor(capsys, *argv: str) -> tuple[int, str, str]:
    rc = monitor.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def step_row(step: int, ts: float, tokens: int = 100, rate: float = 1000.0, loss: float = 2.0) -> tuple:
    return (step, step / 10, loss, 1e-3, 0.5, tokens, rate, step * 0.1, ts)


def running_meta(**extra) -> dict:
    now = time.time()
    return {"status": "running", "run_name": "r", "total_steps": 100, "steps_per_epoch": 10,
            "started_at": now - 50, "updated_at": now, "pid": 1, "host": "another-host", **extra}


def write_store(path: Path, steps: int = 3) -> Path:
    store = MetricStore(path / "metrics.sqlite")
    store.set_meta(run_name="unit", total_steps=10, epochs=1, steps_per_epoch=5, status="running",
                   started_at=time.time(), pid=os.getpid())
    store.log_eval(0, 3.0)
    for step in range(1, steps + 1):
        store.log_step(step, step / 5, 3.0 - step * 0.1, 1e-3, 0.4, 64, 640.0, step * 0.1)
    store.close()
    return path


# --------------------------------------------------------------------------- state (fast)


def test_rolling_throughput_is_tokens_over_compute_time_and_eta_uses_wall_clock():
    # 20 steps: 100 tokens each, alternately 1000 and 500 tok/s (0.1 s and 0.2 s) -> 2000/3 s
    steps = [step_row(i, 1000.0 + 0.5 * i, rate=1000.0 if i % 2 else 500.0) for i in range(1, 21)]
    h = RunHistory(schema_version=1, meta=running_meta(updated_at=1010.0), steps=steps)
    state = summarize(h, Path("x"), stale_after=60, now=1011.0)
    assert state["status"] == "running"
    assert state["tokens_per_s"] == pytest.approx(2000 / 3)
    assert state["eta_s"] == pytest.approx(80 * 0.5)  # 80 steps left, 0.5 s of wall clock each
    assert state["step"] == 20 and state["epochs_total"] == 10


def test_running_run_without_writes_past_the_threshold_is_stale():
    h = RunHistory(schema_version=1, meta=running_meta(updated_at=1000.0), steps=[step_row(1, 1000.0)])
    assert summarize(h, Path("x"), stale_after=30, now=1020.0)["status"] == "running"
    state = summarize(h, Path("x"), stale_after=30, now=1045.0)
    assert state["status"] == "stale" and "no write for 45 s (threshold 30 s)" in state["status_detail"]
    assert state["eta_s"] is None


def test_running_run_whose_trainer_process_is_gone_is_stale():
    import socket

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    h = RunHistory(schema_version=1, meta=running_meta(pid=child.pid, host=socket.gethostname()))
    state = summarize(h, Path("x"), stale_after=600)
    assert state["status"] == "stale" and f"process {child.pid} has exited" in state["status_detail"]
    h.meta.update(pid=os.getpid(), started_at=time.time())  # this process is alive: the run is running
    assert summarize(h, Path("x"), stale_after=600)["status"] == "running"


def test_recorded_end_states_are_shown_as_recorded():
    meta = running_meta(status="stopped_by_guard", stop_reason="training stopped by guard at step 7", finished_at=time.time())
    state = summarize(RunHistory(schema_version=1, meta=meta), Path("x"), stale_after=1)
    assert state["status"] == "stopped_by_guard" and "guard at step 7" in state["status_detail"]
    assert "STOPPED BY GUARD" in plain_frame(state, RunHistory(), 100, 30)


def test_writer_records_failed_when_an_exception_escapes_the_loop(tmp_path):
    store = MetricStore(tmp_path / "metrics.sqlite")
    with pytest.raises(RuntimeError):
        try:
            raise RuntimeError("out of memory")
        finally:
            store.end_run("finished", None)
    meta = StoreReader(tmp_path / "metrics.sqlite").read().meta
    assert meta["status"] == "failed" and meta["stop_reason"] == "RuntimeError: out of memory"


def test_reader_reads_incrementally_and_rereads_after_a_resume_truncates(tmp_path):
    write_store(tmp_path, steps=5)
    source = RunSource(tmp_path)
    assert [r[0] for r in source.poll().steps] == [1, 2, 3, 4, 5]
    assert source.reader.read(after_step=5).steps == []  # only new rows are fetched
    store = MetricStore(tmp_path / "metrics.sqlite")
    store.truncate_after(2)  # what --resume does
    store.log_step(3, 0.6, 9.0, 1e-3, 0.4, 64, 640.0, 0.3)
    assert [(r[0], r[2]) for r in source.poll().steps] == [(1, 2.9), (2, pytest.approx(2.8)), (3, 9.0)]
    store.close()
    source.close()


def test_sample_cadence_default_is_time_based_and_explicit_steps_are_exact(tmp_path):
    store = MetricStore(tmp_path / "metrics.sqlite")
    assert [s for s in range(1, 13) if store.sample_due(s, 4, 2)] == [4, 8, 12]
    assert not any(store.sample_due(s, 0, 2, min_interval=60) for s in range(1, 13))  # short run: no generation cost
    assert [s for s in range(1, 6) if store.sample_due(s, 0, 2, min_interval=0)] == [2, 4]
    store.close()


def test_frame_draws_rust_brackets_literally_and_survives_tiny_terminals():
    h = RunHistory(schema_version=1, meta=running_meta(), steps=[step_row(i, 1000.0 + i, loss=3 / i) for i in range(1, 40)],
                   evals=[(0, 3.1), (20, 0.2)],
                   sample={"step": 20, "input": "pub fn f() {}", "target": "#[test]\nfn t() { [bold]x }", "generated": "#[test]"})
    state = summarize(h, Path("exp"), stale_after=60)
    text = plain_frame(state, h, 120, 40)
    assert "#[test]" in text and "[bold]x" in text and "step 39/100" in text
    assert chart_rows(text), "no braille cells drawn"
    for width, height in ((40, 12), (20, 6)):
        small = plain_frame(state, h, width, height)
        assert max(len(line) for line in small.splitlines()) <= width


# --------------------------------------------------------------------------- waiting and bad input (fast)


def test_directory_without_a_store_yet_is_waiting_not_an_error(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("name: x\n")
    rc, out, _ = run_monitor(capsys, "--experiment", str(tmp_path), "--once")
    assert rc == 0 and "WAITING" in out and "no metrics.sqlite" in out
    (tmp_path / "metrics.sqlite").write_bytes(b"")  # created, schema not yet written
    rc, out, _ = run_monitor(capsys, "--experiment", str(tmp_path), "--json")
    state = json.loads(out)
    assert rc == 0 and state["status"] == "waiting" and "not written its schema" in state["status_detail"]


def _locked(path: Path) -> Path:
    write_store(path)
    holder = sqlite3.connect(path / "metrics.sqlite", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    _locked.holder = holder  # kept open for the test's duration
    return path


def _schema(version: int):
    def make(path: Path) -> Path:
        db = sqlite3.connect(path / "metrics.sqlite")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(f"PRAGMA user_version={version}")
        db.commit()
        db.close()
        return path
    return make


def _truncated(path: Path) -> Path:
    write_store(path, steps=200)
    data = (path / "metrics.sqlite").read_bytes()
    (path / "metrics.sqlite").write_bytes(data[: len(data) // 3])
    return path


BAD = {
    "missing": (lambda p: p / "nope", "no such experiment directory"),
    "file": (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "not an experiment directory (it is a file"),
    "other dir": (lambda p: (p / "notes.txt").write_text("x") and p, "not an experiment directory (no config.yaml"),
    "garbage store": (lambda p: (p / "metrics.sqlite").write_bytes(b"not sqlite " * 400) and p, "corrupt metric store"),
    "truncated store": (_truncated, "corrupt metric store"),
    "locked store": (_locked, "locked by another process"),
    "future schema": (_schema(SCHEMA_VERSION + 1), f"schema version {SCHEMA_VERSION + 1} is newer than this monitor reads"),
    "older schema": (_schema(0), "schema version 0 is older than this monitor reads"),
}


@pytest.mark.parametrize("mode", ["--once", "--json"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_the_path(tmp_path, capsys, case, mode):
    make, problem = BAD[case]
    path = make(tmp_path)
    rc, out, err = run_monitor(capsys, "--experiment", str(path), mode)
    assert rc == 2 and out == ""
    assert err.startswith(f"error: {path}") and problem in err and err.count("\n") == 1, err


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    write_store(tmp_path)
    for argv, expected in ((["--refresh", "5"], "--refresh"), (["--stale-after", "0"], "--stale-after")):
        rc, _, err = run_monitor(capsys, "--experiment", str(tmp_path), "--once", *argv)
        assert rc == 2 and err.startswith(f"error: {expected}") and err.count("\n") == 1


def test_trainer_refuses_to_write_a_store_from_a_future_schema(tmp_path):
    _schema(SCHEMA_VERSION + 1)(tmp_path)
    with pytest.raises(TrainerError, match="newer than this trainer writes"):
        MetricStore(tmp_path / "metrics.sqlite")


# --------------------------------------------------------------------------- live runs (slow)


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def start_training(tmp_path: Path, tiny_data, **training) -> tuple[subprocess.Popen, Path]:
    config = tmp_path / "config.yaml"
    save_config(fast_config(tiny_data, training={"save_steps": 1000, "eval_steps": 50, **training}), config)
    experiment = tmp_path / "run"
    with open(tmp_path / "trainer.out", "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "trainer", "train", "--config", str(config), "--output", str(experiment)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return proc, experiment


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Tmux:
    """One tmux server on a private socket, so the test never touches a user's sessions."""

    def __init__(self, name: str):
        self.socket = f"monitor-test-{os.getpid()}-{name}"
        self.last = ""  # the latest capture, for failure messages

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "mon")

    def screen_when(self, condition):
        """The screen if it satisfies `condition`, else None (for wait_for)."""
        screen = self.last = self.screen()
        return screen if condition(screen) else None

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def shown_step(screen: str) -> int:
    match = re.search(r"step (\d+)/200", screen)
    return int(match.group(1)) if match else -1


def chart_rows(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if any("\u2800" <= ch <= "\u28ff" for ch in line)]


@pytest.mark.slow
@pytest.mark.timeout(700)  # generous: on a loaded machine the 200-step run alone can take minutes
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_tui_follows_a_live_run_resizes_quits_on_q_and_a_killed_monitor_leaves_training_alone(tmp_path, tiny_data):
    trainer, experiment = start_training(tmp_path, tiny_data, max_steps=200, sample_steps=100)
    tmux = Tmux("tui")
    try:
        wait_for(lambda: (experiment / "config.yaml").exists(), 60, "the experiment directory")
        command = f"{sys.executable} -m trainer monitor --experiment {experiment} --refresh 0.5; echo monitor-exited rc=$?; sleep 60"
        tmux("new-session", "-d", "-s", "mon", "-x", "120", "-y", "40", "-c", str(ROOT), command)

        first = wait_for(lambda: tmux.screen_when(lambda s: shown_step(s) >= 1 and chart_rows(s)), 120, "a first step on screen")
        # the chart is redrawn at most every CHART_REDRAW_S, the counters on every refresh: wait for both to move
        second = wait_for(lambda: tmux.screen_when(lambda s: shown_step(s) > shown_step(first) + 2
                                                   and chart_rows(s) != chart_rows(first)), 120,
                          "the step counter and the loss chart to advance")
        assert "RUNNING" in second and "no GPU" in second and "tok/s" in second

        tmux("resize-window", "-t", "mon", "-x", "90", "-y", "30")
        width = int(tmux("display-message", "-p", "-t", "mon", "#{window_width}"))
        assert width < 120
        # the first frame after SIGWINCH may still be drawn at the old height (and scroll); wait for a whole one
        narrow = wait_for(lambda: tmux.screen_when(lambda s: len(s.splitlines()[0].rstrip()) == width and "step " in s), 30,
                          f"a full redraw at {width} columns")
        assert max(len(line.rstrip()) for line in narrow.splitlines()) <= width

        # a second monitor, killed with -9 mid-run, must not disturb the trainer
        victim = subprocess.Popen([sys.executable, "-m", "trainer", "monitor", "--experiment", str(experiment), "--refresh", "0.2"],
                                  cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
        victim.send_signal(signal.SIGKILL)
        victim.wait()

        tmux("send-keys", "-t", "mon", "q")
        after = wait_for(lambda: tmux.screen_when(lambda s: "monitor-exited" in s), 20, "the monitor to quit on q")
        assert "monitor-exited rc=0" in after and "╭" not in after  # alternate screen left: the frame is gone

        assert trainer.wait(timeout=600) == 0, (tmp_path / "trainer.out").read_text()[-2000:]
        metrics = json.loads((experiment / "metrics.json").read_text())
        assert metrics["status"] == "finished" and metrics["steps"] == 200
        assert last_step(experiment / "metrics.sqlite") == 200

        once = cli("monitor", "--experiment", str(experiment), "--once")
        assert once.returncode == 0 and "FINISHED" in once.stdout and "step 200/200" in once.stdout
        assert "latest sample (step 200)" in once.stdout
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast screen:\n{tmux.last}") from None
    finally:
        tmux.kill()
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_trainer_killed_with_sigkill_shows_stale_and_the_store_stays_readable(tmp_path, tiny_data):
    trainer, experiment = start_training(tmp_path, tiny_data, max_steps=5000)
    try:
        wait_for(lambda: last_step(experiment / "metrics.sqlite") >= 5, 180, "five stored steps")
        before = cli("monitor", "--experiment", str(experiment), "--json")
        assert json.loads(before.stdout)["status"] == "running"
        trainer.send_signal(signal.SIGKILL)
        time.sleep(0.5)  # not yet reaped: a zombie must count as dead too
        zombie = json.loads(cli("monitor", "--experiment", str(experiment), "--json").stdout)
        trainer.wait()
        state = json.loads(cli("monitor", "--experiment", str(experiment), "--json").stdout)
        for s in (zombie, state):
            assert s["status"] == "stale" and f"trainer process {trainer.pid} has exited" in s["status_detail"]
        assert state["step"] >= 5 and state["eta_s"] is None
        once = cli("monitor", "--experiment", str(experiment), "--once")
        assert once.returncode == 0 and "STALE" in once.stdout and "has exited" in once.stdout
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()


@pytest.mark.slow
def test_once_and_json_on_a_finished_run_match_metrics_json(tmp_path, tiny_data, capsys):
    from trainer.train import train

    metrics = train(fast_config(tiny_data), tmp_path / "exp")
    rc, out, _ = run_monitor(capsys, "--experiment", str(tmp_path / "exp"), "--json")
    state = json.loads(out)
    assert rc == 0 and state["status"] == "finished" and state["step"] == metrics["steps"] == state["total_steps"]
    assert state["val_loss"] == pytest.approx(metrics["final_val_loss"])
    assert state["train_loss"] == pytest.approx(metrics["final_train_loss"])
    assert state["hardware"]["ram_total_mb"] > 0 and state["hardware"]["gpu_util"] is None
    rc, out, _ = run_monitor(capsys, "--experiment", str(tmp_path / "exp"), "--once")
    assert rc == 0 and "FINISHED" in out and f"step {metrics['steps']}/{metrics['steps']}" in out and "no GPU" in out

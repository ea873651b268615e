"""Training throughput with and without a live monitor attached: `python -m falsify.bench monitor`.

Runs the tiny model's training as a separate process, alternately without (A) and with
(B) a live `trainer monitor --refresh 0.2` attached (A B A B ..., so drift in machine load
hits both alike), and prints each run's median tokens/s (metrics.json's per-step median),
the median per variant and the slowdown ratio. The monitor draws into a pseudo-terminal
(120 x 40) that this script drains, as a terminal would; its CPU use is reported too.

    python -m falsify.bench monitor [--pairs 3] [--steps 150] [--refresh 0.2] [--keep DIR]

On a shared machine whole runs a minute apart see different background load, so
`--windows` adds a finer A/B: one long training run, with the monitor started and
stopped in alternating windows of a few seconds (its start-up counted against it). Each
window's throughput is tokens over step compute time from the store's step rows.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

from trainer.experiment import ExperimentPaths
from trainer.monitor.store import StoreReader, last_step

ROOT = Path(__file__).resolve().parents[2]  # the repository root: where `python -m trainer` runs


def write_config(path: Path, steps: int) -> Path:
    from falsify.checks.fixtures import run_config
    from trainer.config import save_config

    save_config(run_config(training={"max_steps": steps, "eval_steps": steps, "save_steps": steps}), path)
    return path


class PtyMonitor:
    """A live monitor process on a 120 x 40 pseudo-terminal whose output is read and dropped."""

    def __init__(self, experiment: Path, refresh: float):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm-256color"}
        self.proc = subprocess.Popen([sys.executable, "-m", "trainer", "monitor", "--experiment", str(experiment),
                                      "--refresh", str(refresh)], cwd=ROOT, stdin=slave, stdout=slave, stderr=slave,
                                     env=env, start_new_session=True)
        os.close(slave)
        self.master, self.bytes = master, 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.bytes += len(chunk)

    def stop(self) -> tuple[bool, float]:
        """(was it still running, CPU seconds it used)."""
        alive = self.proc.poll() is None
        cpu = 0.0
        if alive:
            times = psutil.Process(self.proc.pid).cpu_times()
            cpu = times.user + times.system
            self.proc.terminate()
        self.proc.wait()
        os.close(self.master)
        return alive, cpu


def one_run(config: Path, out: Path, monitor_refresh: float | None) -> dict:
    experiment = out / f"run-{len(list(out.iterdir()))}"
    paths = ExperimentPaths(experiment)
    started = time.monotonic()
    trainer = subprocess.Popen([sys.executable, "-m", "trainer", "train", "--config", str(config), "--output", str(experiment)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    monitor = None
    if monitor_refresh is not None:
        while not paths.config.exists():  # attach as soon as the directory exists, before step 1
            if trainer.poll() is not None:
                break
            time.sleep(0.02)
        monitor = PtyMonitor(experiment, monitor_refresh)
    _, err = trainer.communicate()
    wall = time.monotonic() - started
    if trainer.returncode != 0:
        raise SystemExit(f"error: training failed ({trainer.returncode}): {err.strip().splitlines()[-1:]}")
    result = {"tokens_per_s": json.loads(paths.metrics.read_text())["tokens_per_s_median"], "wall_s": wall}
    if monitor is not None:
        alive, cpu = monitor.stop()
        if not alive or monitor.bytes == 0:
            raise SystemExit("error: the monitor exited or drew nothing during the run; the measurement is invalid")
        result.update(monitor_cpu_s=cpu, monitor_bytes=monitor.bytes)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falsify.bench monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs (default 3)")
    parser.add_argument("--steps", type=int, default=150, help="training steps per run (default 150)")
    parser.add_argument("--refresh", type=float, default=0.2, help="the monitor's refresh interval (default 0.2 s)")
    parser.add_argument("--keep", help="directory for the runs (default: a temporary one, removed)")
    parser.add_argument("--windows", type=int, default=0, metavar="N",
                        help="also run N off/on window pairs inside one long training run (see above)")
    parser.add_argument("--window-s", type=float, default=6.0, help="seconds per window (default 6)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        config = write_config(out.parent / f"{out.name}-config.yaml" if args.keep else Path(tmp) / "config.yaml", args.steps)
        runs = out / "runs"
        runs.mkdir(exist_ok=True)
        without, with_monitor = [], []
        print(f"tiny model, {args.steps} steps per run, {args.pairs} pairs, monitor refresh {args.refresh} s; "
              f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
        for pair in range(1, args.pairs + 1):
            a = one_run(config, runs, None)
            b = one_run(config, runs, args.refresh)
            without.append(a["tokens_per_s"])
            with_monitor.append(b["tokens_per_s"])
            print(f"pair {pair}: without {a['tokens_per_s']:8.1f} tok/s | with {b['tokens_per_s']:8.1f} tok/s "
                  f"(ratio {b['tokens_per_s'] / a['tokens_per_s']:.4f}; monitor used {b['monitor_cpu_s']:.2f} CPU s "
                  f"over {b['wall_s']:.1f} s, drew {b['monitor_bytes'] / 1024:.0f} KiB)")
        if without:
            med_a, med_b = statistics.median(without), statistics.median(with_monitor)
            ratio = med_b / med_a
            print(f"median tokens/s: without monitor {med_a:.1f}, with monitor {med_b:.1f}")
            print(f"ratio with/without {ratio:.4f}: slowdown {100 * (1 - ratio):+.2f}% (target < 2%)")
        if args.windows:
            window_comparison(out, args.windows, args.window_s, args.refresh)
    return 0


def window_comparison(out: Path, pairs: int, seconds: float, refresh: float) -> None:
    config = write_config(out / "windows-config.yaml", 1_000_000)
    experiment = out / "windows-run"
    trainer = subprocess.Popen([sys.executable, "-m", "trainer", "train", "--config", str(config), "--output", str(experiment)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = ExperimentPaths(experiment).store
    try:
        while not (store.exists() and last_step(store) >= 5):  # past start-up and the first slow steps
            if trainer.poll() is not None:
                raise SystemExit("error: the windows training run exited early")
            time.sleep(0.2)
        windows = []  # (monitor on?, start, end) in time.time(), the clock the store's ts uses
        for _ in range(pairs):
            for on in (False, True):
                start = time.time()
                monitor = PtyMonitor(experiment, refresh) if on else None
                time.sleep(seconds)
                if monitor is not None and not monitor.stop()[0]:
                    raise SystemExit("error: the monitor exited during its window; the measurement is invalid")
                windows.append((on, start, time.time()))
    finally:
        trainer.kill()
        trainer.wait()
    reader = StoreReader(store)
    steps = reader.read().steps
    reader.close()
    rates = {False: [], True: []}
    for on, start, end in windows:
        rows = [r for r in steps if start <= r[8] < end and r[6]]
        seconds_computing = sum(r[5] / r[6] for r in rows)
        if rows and seconds_computing:
            rates[on].append(sum(r[5] for r in rows) / seconds_computing)
    pair_ratios = [b / a for a, b in zip(rates[False], rates[True])]
    med_a, med_b = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"windows: {pairs} off/on pairs of {seconds:g} s in one run ({len(steps)} steps)")
    print("  off: " + " ".join(f"{r:.0f}" for r in rates[False]))
    print("  on:  " + " ".join(f"{r:.0f}" for r in rates[True]))
    print(f"  median tokens/s: without monitor {med_a:.1f}, with monitor {med_b:.1f}; "
          f"ratio {med_b / med_a:.4f} (slowdown {100 * (1 - med_b / med_a):+.2f}%); "
          f"median of pair ratios {statistics.median(pair_ratios):.4f}")


if __name__ == "__main__":
    sys.exit(main())

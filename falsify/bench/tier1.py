"""Wall time of `pytest -m tier1`: cold, warm in one process, warm on all cores, interleaved.

    python -m falsify.bench tier1 [--runs 5] [--no-cold] [--json FILE]

A script, not a test (timings are never asserted): each round runs the same command with
FALSIFY_WARM=0 (a fresh interpreter imports everything; `--no-cold` leaves it out), through
the warm interpreter with `--falsify-jobs 1` (its items in the forked run's process), and
through it as `pytest -m tier1` runs by default (items on one worker per core); then as many
default runs back to back, as on consecutive saves. Start the server first (`python -m
falsify.warm start`).
Every run must report the same outcomes (the warnings count may differ: a warning raised
once per process is raised once per worker). It prints every run, the medians and the
ratios: quote medians, the machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from falsify.warm import protocol
from trainer.files import write_atomic

COMMAND = [sys.executable, "-m", "pytest", "-m", "tier1", "-q", "-p", "no:cacheprovider"]
SUMMARY = re.compile(r"=*\s*(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s")
MODES = {"cold": ("0", []), "warm, 1 process": (None, ["--falsify-jobs=1"]), "warm": (None, [])}  # FALSIFY_WARM, extra args


def run_once(mode: str) -> tuple[float, str, int, bool]:
    """(wall seconds, outcome summary without the warnings count, exit status, whether the server ran it)."""
    falsify_warm, extra = MODES[mode]
    env = {k: v for k, v in os.environ.items() if k != "FALSIFY_WARM"} | ({"FALSIFY_WARM": falsify_warm} if falsify_warm else {})
    served_before = protocol.request("status")["runs"]
    t0 = time.perf_counter()
    proc = subprocess.run(COMMAND + extra, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    found = SUMMARY.findall(proc.stdout + proc.stderr)
    summary = re.sub(r", \d+ warnings?", "", found[-1]) if found else "no summary"
    return wall, summary, proc.returncode, protocol.request("status")["runs"] > served_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falsify.bench tier1", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds of the modes, then as many back-to-back runs (default 5)")
    parser.add_argument("--no-cold", action="store_true", help="leave out the cold runs (the slow ones)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    try:
        status = protocol.request("status")
    except protocol.WarmError as exc:
        print(f"error: {exc}; start it with: python -m falsify.warm start", file=sys.stderr)
        return 2
    # The modes interleave (so that the machine's load hits them alike); then default runs back to back.
    modes = [name for name in MODES if not (args.no_cold and name == "cold")]
    series: dict[str, list[float]] = {name: [] for name in (*modes, "back-to-back warm")}
    schedule = [(f"round {i + 1}", name, name) for i in range(args.runs) for name in modes]
    schedule += [(f"run {i + 1}", "back-to-back warm", "warm") for i in range(args.runs)]
    summaries, loads = set(), []
    for step, name, mode in schedule:
        cold = mode == "cold"
        loads.append(os.getloadavg()[0])
        wall, summary, rc, served = run_once(mode)
        if served == cold:
            print(f"error: the {name} run was {'' if cold else 'not '}served by the warm interpreter: {summary}",
                  file=sys.stderr)
            return 2
        series[name].append(round(wall, 3))
        summaries.add((summary, rc))
        print(f"{name:>17} {step}: {wall:6.2f} s  ({summary}, exit {rc})")
    if len(summaries) != 1:
        print(f"error: the runs disagree: {sorted(summaries)}", file=sys.stderr)
        return 1
    medians = {name: round(statistics.median(times), 3) for name, times in series.items()}
    print("medians (min to max): " + ", ".join(f"{name} {medians[name]:.2f} s ({min(times):.2f} to {max(times):.2f})"
                                              for name, times in series.items()))
    ratios = [f"{name} / warm {medians[name] / medians['warm']:.2f}x" for name in ("cold", "warm, 1 process") if name in medians]
    print(f"ratios: {'; '.join(ratios)} (server pid {status['pid']}, preloaded in {status['preload_s']} s; "
          f"{len(os.sched_getaffinity(0))} usable cores; load average {min(loads):.2f} to {max(loads):.2f} during the runs)")
    if args.json:
        write_atomic(args.json, json.dumps({"command": COMMAND[1:], "runs_s": series, "medians_s": medians,
                                         "outcome": sorted(summaries)[0][0], "cpus": len(os.sched_getaffinity(0)),
                                         "load_average": [min(loads), max(loads)],
                                         "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wall time of `pytest -m tier1`: cold, warm in one process, warm on all cores, interleaved.

    python -m falsify.bench.tier1 [--runs 5] [--json FILE]

A script, not a test (timings are never asserted): each round runs the same command with
FALSIFY_WARM=0 (a fresh interpreter imports everything), through the warm interpreter with
`--falsify-jobs 1` (its items in the forked run's process), and through it as `pytest -m
tier1` runs by default (items on one worker per core); then as many default runs back to
back, as on consecutive saves. Start the server first (`python -m falsify.warm start`).
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

from falsify import warm

COMMAND = [sys.executable, "-m", "pytest", "-m", "tier1", "-q", "-p", "no:cacheprovider"]
SUMMARY = re.compile(r"=*\s*(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s")
MODES = {"cold": ({"FALSIFY_WARM": "0"}, []), "warm, 1 process": ({"FALSIFY_WARM": "use"}, ["--falsify-jobs=1"]),
         "warm": ({"FALSIFY_WARM": "use"}, [])}


def run_once(mode: str) -> tuple[float, str, int, bool]:
    """(wall seconds, outcome summary without the warnings count, exit status, whether the server ran it)."""
    env, extra = MODES[mode]
    served_before = warm.request("status")["runs"]
    t0 = time.perf_counter()
    proc = subprocess.run(COMMAND + extra, env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    found = SUMMARY.findall(proc.stdout + proc.stderr)
    summary = re.sub(r", \d+ warnings?", "", found[-1]) if found else "no summary"
    return wall, summary, proc.returncode, warm.request("status")["runs"] > served_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds of the three modes, then as many back-to-back runs (default 5)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    try:
        status = warm.request("status")
    except warm.WarmError as exc:
        print(f"error: {exc}; start it with: python -m falsify.warm start", file=sys.stderr)
        return 2
    # The three modes interleave (so that the machine's load hits them alike); then default runs back to back.
    series: dict[str, list[float]] = {name: [] for name in (*MODES, "back-to-back warm")}
    schedule = [(f"round {i + 1}", name, name) for i in range(args.runs) for name in MODES]
    schedule += [(f"run {i + 1}", "back-to-back warm", "warm") for i in range(args.runs)]
    summaries = set()
    for step, name, mode in schedule:
        cold = mode == "cold"
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
    print(f"medians: cold {medians['cold']:.2f} s, warm in 1 process {medians['warm, 1 process']:.2f} s, "
          f"warm {medians['warm']:.2f} s, back-to-back warm {medians['back-to-back warm']:.2f} s")
    print(f"ratios: cold / warm {medians['cold'] / medians['warm']:.2f}x; warm in 1 process / warm "
          f"{medians['warm, 1 process'] / medians['warm']:.2f}x (server pid {status['pid']}, preloaded in "
          f"{status['preload_s']} s; {len(os.sched_getaffinity(0))} usable cores; load average {os.getloadavg()[0]:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"command": COMMAND[1:], "runs_s": series, "medians_s": medians,
                                         "outcome": sorted(summaries)[0][0], "cpus": len(os.sched_getaffinity(0)),
                                         "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wall time of `pytest -m tier1`, cold against warm, alternating in one invocation.

    python -m falsify.tier1_bench [--runs 5] [--json FILE]

A script, not a test (timings are never asserted): each pair runs the same command once
with FALSIFY_WARM=0 (a fresh interpreter imports everything) and once through the warm
interpreter (`python -m falsify.warm start` first); then as many warm runs back to back,
as on consecutive saves. Every run must report the same outcomes. It prints every run,
the medians and the ratio: quote medians, the machines are noisy.
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


def run_once(cold: bool) -> tuple[float, str, int, bool]:
    """(wall seconds, outcome summary, exit status, whether the warm interpreter served the run)."""
    env = dict(os.environ)
    if cold:
        env["FALSIFY_WARM"] = "0"
    served_before = warm.request("status")["runs"]
    t0 = time.perf_counter()
    proc = subprocess.run(COMMAND, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    found = SUMMARY.findall(proc.stdout + proc.stderr)
    return wall, (found[-1] if found else "no summary"), proc.returncode, warm.request("status")["runs"] > served_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="pairs of runs (default 5)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    try:
        status = warm.request("status")
    except warm.WarmError as exc:
        print(f"error: {exc}; start it with: python -m falsify.warm start", file=sys.stderr)
        return 2
    # Cold and warm alternate; then warm runs back to back, as on consecutive saves.
    series: dict[str, list[float]] = {"cold": [], "warm": [], "back-to-back warm": []}
    schedule = [(f"pair {i + 1}", name) for i in range(args.runs) for name in ("cold", "warm")]
    schedule += [(f"run {i + 1}", "back-to-back warm") for i in range(args.runs)]
    summaries = set()
    for step, name in schedule:
        cold = name == "cold"
        wall, summary, rc, served = run_once(cold)
        if served == cold:
            print(f"error: the {name} run was {'' if cold else 'not '}served by the warm interpreter: {summary}",
                  file=sys.stderr)
            return 2
        series[name].append(wall)
        summaries.add((summary, rc))
        print(f"{name} {step}: {wall:6.2f} s  ({summary}, exit {rc})")
    if len(summaries) != 1:
        print(f"error: cold and warm runs disagree: {sorted(summaries)}", file=sys.stderr)
        return 1
    cold, hot, back_to_back = series["cold"], series["warm"], series["back-to-back warm"]
    med_cold, med_warm, med_b2b = statistics.median(cold), statistics.median(hot), statistics.median(back_to_back)
    print(f"median cold {med_cold:.2f} s, warm {med_warm:.2f} s (alternating): warm is {med_cold / med_warm:.2f}x faster; "
          f"back-to-back warm {med_b2b:.2f} s (server pid {status['pid']}, preloaded in {status['preload_s']} s; "
          f"load average {os.getloadavg()[0]:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"command": COMMAND[1:], "cold_s": cold, "warm_s": hot, "back_to_back_warm_s": back_to_back,
                                         "median_cold_s": med_cold, "median_warm_s": med_warm,
                                         "median_back_to_back_warm_s": med_b2b, "outcome": sorted(summaries)[0][0],
                                         "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

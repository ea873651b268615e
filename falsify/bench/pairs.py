"""What every A-vs-B benchmark reports about its alternating pairs: the ratio of medians, a bootstrap
95% CI of it, the per-pair ratios and their spread, and the machine's load while it ran.

Written here rather than with scipy.stats.bootstrap because the statistic is a ratio of two
medians over paired runs: pairs are resampled together, so the CI carries the load drift that
the alternation is there to cancel.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
from collections.abc import Callable
from pathlib import Path

from trainer.files import write_atomic


def load_average() -> float:
    """The 1-minute load average (runnable processes); compare it with os.cpu_count()."""
    return os.getloadavg()[0]


def busy_warning(label: str) -> str | None:
    """A line saying the machine is busy (load above its core count), or None."""
    load, cores = load_average(), os.cpu_count() or 1
    if load > cores:
        return f"warning: load average {load:.1f} on {cores} cores {label}: timings will be noisy"
    return None


def ratio_summary(a: list[float], b: list[float], *, resamples: int = 10_000, seed: int = 0) -> dict:
    """`a` and `b`: one value per pair, same order. Ratio of medians (a/b), its bootstrap 95% CI over
    pairs, each pair's ratio and their range."""
    if len(a) != len(b) or not a:
        raise ValueError("ratio_summary needs the same number (>= 1) of values on each side")
    rng = random.Random(seed)
    n = len(a)
    boot = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        boot.append(statistics.median(a[i] for i in idx) / statistics.median(b[i] for i in idx))
    boot.sort()
    per_pair = [x / y for x, y in zip(a, b)]
    return {"ratio": statistics.median(a) / statistics.median(b),
            "ci95": [boot[int(0.025 * resamples)], boot[int(0.975 * resamples) - 1]],
            "pair_ratios": per_pair, "pair_ratio_range": [min(per_pair), max(per_pair)],
            "median_a": statistics.median(a), "median_b": statistics.median(b), "pairs": n}


def alternate(variants: tuple[str, str], pairs: int, run: Callable[[str, int], dict],
              describe: Callable[[dict], str]) -> tuple[dict[str, list[dict]], list[float]]:
    """`pairs` alternating pairs, A B then B A, ... (so a drift in load hits both sides alike): each
    `run(variant, pair)` result in order, and the load average before the first run and after each."""
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    load = [load_average()]
    for pair in range(pairs):
        for variant in variants if pair % 2 == 0 else variants[::-1]:
            if warning := busy_warning(f"before {variant} run {pair + 1}"):
                print(warning, flush=True)
            runs[variant].append(run(variant, pair))
            load.append(load_average())
            print(f"pair {pair + 1}/{pairs} {variant}: {describe(runs[variant][-1])}", flush=True)
    return runs, load


def write_results(out: Path, name: str, result: dict, md: str) -> None:
    """`out/name.json` and `out/name.md`, each replaced whole; the markdown is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{name}.json", json.dumps(result, indent=1))
    write_atomic(out / f"{name}.md", md)
    print(md)


def max_relative_difference(a: list[float], b: list[float]) -> float:
    """Largest |a - b| / |b| step by step; infinite when the curves are empty or of different lengths."""
    return max(abs(x - y) / abs(y) for x, y in zip(a, b)) if a and len(a) == len(b) else float("inf")


def training_run_options(name: str, doc: str, *, config: str, steps: int) -> argparse.ArgumentParser:
    """The options of a bench that trains a packaged config a few steps per run (precision, memory)."""
    ap = argparse.ArgumentParser(prog=f"python -m falsify.bench {name}", description=doc.split("\n")[0])
    ap.add_argument("--config", default=config)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--workdir", default=f"experiments/bench/{name}")
    ap.add_argument("--out", default="reports/bench")
    return ap

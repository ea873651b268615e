"""What every A-vs-B benchmark reports about its alternating pairs: the ratio of medians, a bootstrap
95% CI of it, the per-pair ratios and their spread, and the machine's load while it ran.

Written here rather than with scipy.stats.bootstrap because the statistic is a ratio of two
medians over paired runs: pairs are resampled together, so the CI carries the load drift that
the alternation is there to cancel.
"""

from __future__ import annotations

import os
import random
import statistics


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

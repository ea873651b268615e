"""Did the fine-tune help? Did critic reranking help? Two generators on the same holdout, paired.

The questions (QUESTIONS): the base model against the tuned adapter, and the tuned adapter's
first sampled candidate against the candidate a test critic picked among N. In both, the two
generators write tests for the same holdout functions and both go through the same
evaluator; a function's two verdicts form a pair, so each rate difference is a paired
difference. The JSON keeps the sides as `base` (before the change) and `tuned` (after it),
and names them in `sides`. For each rate:

- the value of each side (a mean over the n paired functions);
- the difference tuned - base with a bootstrap 95% CI (scipy.stats.bootstrap over the
  per-function differences, percentile method: it stays defined when every difference is
  equal, where BCa is not);
- a paired test: exact McNemar for the binary rates (a binomial test on the discordant
  pairs, scipy.stats.binomtest), Wilcoxon signed-rank for the continuous ones.

A rate moved only when the test rejects at ALPHA *and* the CI excludes 0; the words say
"helped", "hurt", "mixed" or "cannot be told apart", and below MIN_N pairs they say
that n is too small, whatever the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_N = 30
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # a fixed seed: the same evidence gives the same CI in every report


@dataclass(frozen=True)
class Rate:
    name: str
    binary: bool
    per_function: Callable[[dict], float]
    meaning: str


def _flag(key: str) -> Callable[[dict], float]:
    return lambda rec: 1.0 if rec.get(key) is True else 0.0


def _zero_when_unmeasured(key: str) -> Callable[[dict], float]:
    """The record's value, 0 where it is null (not measured): an unmeasured function added nothing."""
    return lambda rec: float(rec.get(key) or 0.0)


# Every rate can move the verdict; the primary ones are always named in its sentence.
RATES = (
    Rate("compile_rate", True, _flag("compiles"), "share of functions whose tests build"),
    Rate("pass_rate", True, _flag("passes"), "share of functions whose tests pass every run"),
    Rate("mutation_score", False, _zero_when_unmeasured("mutation_score"),
         "mean share of mutants killed; 0 where mutation did not run (tests that do not pass kill nothing)"),
    Rate("coverage_gain", False, _zero_when_unmeasured("line_coverage_gain"),
         "mean line coverage of the function added to what the crate's own tests cover; 0 where not measured"),
)
PRIMARY = ("compile_rate", "pass_rate")


@dataclass(frozen=True)
class Question:
    """What a comparison asks: whether `subject` helped, from the `before` side to the `after` side."""

    key: str      # where the scorecard keeps it (and its missing-evidence reason)
    title: str
    subject: str
    before: str
    after: str


FINE_TUNE = Question("comparison", "Did the fine-tune help?", "the fine-tune", "base", "tuned")
RERANK = Question("rerank_comparison", "Did critic reranking help?", "critic reranking", "first candidate", "critic-reranked")
QUESTIONS = (FINE_TUNE, RERANK)


class Delta(TypedDict):
    value: float
    ci95: list[float]
    p_value: float
    test: str
    verdict: str  # "better" | "worse" | "no difference shown"


class Comparison(TypedDict):
    question: str                # Question.title
    sides: list[str]             # [before, after]: what `base` and `tuned` hold
    n: int
    unpaired: dict[str, int]     # ids only one side has (left out of every rate)
    base: dict[str, float]
    tuned: dict[str, float]
    delta: dict[str, Delta]
    verdict: str                 # "helped" | "hurt" | "mixed" | "cannot be told apart" | "too few pairs"
    sentence: str
    method: dict[str, str]


class ComparisonError(ValueError):
    """The two evaluations cannot be paired (duplicate ids, nothing in common)."""


def _by_id(records: list[dict], side: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for rec in records:
        key = str(rec.get("id"))
        if key in out:
            raise ComparisonError(f"{side}: sample id {key!r} appears twice; pairs need unique ids")
        out[key] = rec
    return out


def bootstrap_ci(differences: np.ndarray) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean of paired differences."""
    if np.all(differences == differences[0]):
        return float(differences[0]), float(differences[0])
    res = stats.bootstrap((differences,), np.mean, confidence_level=0.95, n_resamples=BOOTSTRAP_RESAMPLES,
                          method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar_exact(base: np.ndarray, tuned: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: only pairs that disagree carry evidence."""
    only_base = int(np.sum((base == 1) & (tuned == 0)))
    only_tuned = int(np.sum((base == 0) & (tuned == 1)))
    if only_base + only_tuned == 0:
        return 1.0
    return float(stats.binomtest(min(only_base, only_tuned), only_base + only_tuned, 0.5).pvalue)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when no pair differs (the test is undefined there)."""
    if not np.any(differences != 0):
        return 1.0
    return float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)


def _judge(ci: tuple[float, float], p: float) -> str:
    if p < ALPHA and ci[0] > 0:
        return "better"
    if p < ALPHA and ci[1] < 0:
        return "worse"
    return "no difference shown"


def compare(base_records: list[dict], tuned_records: list[dict], question: Question = FINE_TUNE,
            rates: tuple[Rate, ...] = RATES) -> Comparison:
    """Pair the evaluator's records by sample id and compare every rate in `rates` (`base`: the before side)."""
    base, tuned = _by_id(base_records, question.before), _by_id(tuned_records, question.after)
    ids = sorted(base.keys() & tuned.keys())
    if not ids:
        raise ComparisonError(f"{question.before} and {question.after} evaluations share no sample id: nothing to compare")
    out = Comparison(question=question.title, sides=[question.before, question.after], n=len(ids),
                     unpaired={"base_only": len(base.keys() - tuned.keys()), "tuned_only": len(tuned.keys() - base.keys())},
                     base={}, tuned={}, delta={}, verdict="", sentence="",
                     method={"ci": f"paired bootstrap, percentile, {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}",
                             "binary": "exact McNemar (binomial test on discordant pairs)",
                             "continuous": "Wilcoxon signed-rank", "alpha": str(ALPHA), "min_n": str(MIN_N)})
    for rate in rates:
        b = np.array([rate.per_function(base[i]) for i in ids])
        t = np.array([rate.per_function(tuned[i]) for i in ids])
        d = t - b
        ci = bootstrap_ci(d)
        p = mcnemar_exact(b, t) if rate.binary else wilcoxon_p(d)
        out["base"][rate.name], out["tuned"][rate.name] = float(b.mean()), float(t.mean())
        out["delta"][rate.name] = Delta(value=float(d.mean()), ci95=[ci[0], ci[1]], p_value=p,
                                        test="mcnemar_exact" if rate.binary else "wilcoxon", verdict=_judge(ci, p))
    out["verdict"], out["sentence"] = verdict(out, question)
    return out


def _rate_text(cmp: Comparison, name: str) -> str:
    d = cmp["delta"][name]
    return (f"{name.replace('_', ' ')} {cmp['base'][name]:.3f} -> {cmp['tuned'][name]:.3f} "
            f"({d['value']:+.3f}, 95% CI [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], p = {d['p_value']:.3g})")


def verdict(cmp: Comparison, question: Question = FINE_TUNE) -> tuple[str, str]:
    """The answer in one word and one sentence."""
    n = cmp["n"]
    moved = {name: d["verdict"] for name, d in cmp["delta"].items() if d["verdict"] != "no difference shown"}
    primary = "; ".join(_rate_text(cmp, name) for name in PRIMARY)
    if n < MIN_N:
        return "too few pairs", (f"Cannot say whether {question.subject} helped: n = {n} paired functions, "
                                 f"below the minimum of {MIN_N}. {primary}.")
    better = [k for k, v in moved.items() if v == "better"]
    worse = [k for k, v in moved.items() if v == "worse"]
    word = "mixed" if better and worse else "helped" if better else "hurt" if worse else "cannot be told apart"
    subject = question.subject[0].upper() + question.subject[1:]
    lead = {"helped": f"{subject} helped", "hurt": f"{subject} hurt",
            "mixed": f"{subject} helped on some rates and hurt on others",
            "cannot be told apart": f"{question.before[0].upper() + question.before[1:]} and {question.after} cannot be told apart"}[word]
    detail = "; ".join(_rate_text(cmp, k) for k in moved if k not in PRIMARY)
    return word, f"{lead} (n = {n}, alpha {ALPHA}): {primary}" + (f"; also {detail}" if detail else "") + "."

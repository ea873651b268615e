"""Base vs tuned: paired rates, bootstrap CIs, McNemar/Wilcoxon p-values and the verdict in words."""

from __future__ import annotations

import math

import pytest

from falsify.report.comparison import MIN_N, ComparisonError, compare, mcnemar_exact


def records(compiles: list[bool], passes: list[bool] | None = None, scores: list[float | None] | None = None) -> list[dict]:
    passes = passes or compiles
    scores = scores or [None] * len(compiles)
    return [{"id": f"f{i}", "compiles": c, "passes": p, "mutation_score": s, "line_coverage_gain": None}
            for i, (c, p, s) in enumerate(zip(compiles, passes, scores))]


def test_a_real_improvement_is_called_helped_with_a_ci_that_excludes_zero():
    n = 40
    base = records([i < 5 for i in range(n)])    # 5/40 compile and pass
    tuned = records([i < 30 for i in range(n)])  # 30/40: 25 functions better, none worse
    cmp = compare(base, tuned)
    d = cmp["delta"]["pass_rate"]
    assert cmp["n"] == n and cmp["base"]["pass_rate"] == 5 / n and cmp["tuned"]["pass_rate"] == 30 / n
    assert d["value"] == pytest.approx(25 / n)
    assert 0 < d["ci95"][0] < d["value"] < d["ci95"][1] <= 1
    assert d["p_value"] == pytest.approx(2 * 0.5 ** 25)  # exact McNemar: 25 discordant pairs, all one way
    assert d["verdict"] == "better" and cmp["verdict"] == "helped"
    assert "helped" in cmp["sentence"] and "n = 40" in cmp["sentence"]


def test_the_same_generations_cannot_be_told_apart():
    same = records([i % 3 == 0 for i in range(36)])
    cmp = compare(same, same)
    assert cmp["verdict"] == "cannot be told apart"
    for d in cmp["delta"].values():
        assert d["value"] == 0 and d["ci95"] == [0.0, 0.0] and d["p_value"] == 1.0


def test_a_regression_is_called_hurt():
    base = records([True] * 40)
    tuned = records([i >= 20 for i in range(40)])
    cmp = compare(base, tuned)
    assert cmp["verdict"] == "hurt" and cmp["delta"]["compile_rate"]["ci95"][1] < 0


def test_a_small_difference_on_a_noisy_sample_is_not_claimed():
    """4 better and 2 worse out of 40 is what chance gives often: no verdict either way."""
    base = records([i in (0, 1) for i in range(40)])
    tuned = records([i in (2, 3, 4, 5) for i in range(40)])
    cmp = compare(base, tuned)
    assert cmp["delta"]["pass_rate"]["p_value"] > 0.05 and cmp["verdict"] == "cannot be told apart"


def test_too_few_pairs_say_so_whatever_the_numbers():
    n = MIN_N - 1
    cmp = compare(records([False] * n), records([True] * n))
    assert cmp["verdict"] == "too few pairs" and f"n = {n}" in cmp["sentence"]


def test_mcnemar_exact_matches_the_binomial_sum():
    base = [1] * 3 + [0] * 10 + [1] * 5
    tuned = [0] * 3 + [1] * 10 + [1] * 5
    import numpy as np

    expected = 2 * sum(math.comb(13, k) for k in range(4)) / 2 ** 13
    assert mcnemar_exact(np.array(base), np.array(tuned)) == pytest.approx(expected)


def test_continuous_rates_count_unmeasured_as_zero_and_use_a_signed_rank_test():
    n = 40
    base = records([True] * n, scores=[None] * n)
    tuned = records([True] * n, scores=[0.5 + 0.01 * i for i in range(n)])
    cmp = compare(base, tuned)
    assert cmp["base"]["mutation_score"] == 0.0 and cmp["delta"]["mutation_score"]["test"] == "wilcoxon"
    assert cmp["delta"]["mutation_score"]["p_value"] < 1e-6 and cmp["verdict"] == "helped"


def test_pairs_are_matched_by_id_and_the_rest_counted():
    base = records([True, False, True])
    tuned = list(reversed(records([True, False, True])))[:2] + [{"id": "other", "compiles": True, "passes": True}]
    cmp = compare(base, tuned)
    assert cmp["n"] == 2 and cmp["unpaired"] == {"base_only": 1, "tuned_only": 1}


def test_unpairable_inputs_are_errors_that_say_why():
    with pytest.raises(ComparisonError, match="appears twice"):
        compare(records([True, True]) + records([True]), records([True]))
    with pytest.raises(ComparisonError, match="no sample id"):
        compare(records([True]), [{"id": "x", "compiles": True}])

"""The A-vs-B summary every training benchmark prints: ratio of medians, bootstrap CI over pairs, spread."""

from __future__ import annotations

import pytest

from falsify.bench.pairs import ratio_summary


def test_ratio_of_medians_with_a_ci_that_holds_it():
    a, b = [12.0, 10.0, 11.0, 30.0, 9.0], [5.0, 5.0, 5.5, 4.5, 5.0]
    s = ratio_summary(a, b)
    assert s["ratio"] == pytest.approx(11.0 / 5.0) and s["pairs"] == 5
    assert s["ci95"][0] <= s["ratio"] <= s["ci95"][1] and s["ci95"][0] < s["ci95"][1]
    assert s["pair_ratios"][3] == pytest.approx(30 / 4.5) and s["pair_ratio_range"] == [pytest.approx(9 / 5), pytest.approx(30 / 4.5)]


def test_equal_sides_give_a_ci_of_exactly_one():
    s = ratio_summary([3.0, 4.0, 5.0], [3.0, 4.0, 5.0])
    assert s["ratio"] == 1.0 and s["ci95"] == [1.0, 1.0]


def test_unpaired_input_is_refused():
    with pytest.raises(ValueError):
        ratio_summary([1.0, 2.0], [1.0])

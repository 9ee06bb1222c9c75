"""analytics.metrics: pure fairness and pacing figures against values worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from analytics import metrics


def test_gini_known_values():
    assert metrics.gini([5, 5, 5, 5]) == 0
    # One of four holds everything: (n - 1) / n.
    assert metrics.gini([0, 0, 0, 10]) == pytest.approx(0.75)
    # 1, 2, 3, 4: Σ(2i - n - 1)x = (-3)(1) + (-1)(2) + (1)(3) + (3)(4) = 10; 10 / (4 × 10) = 0.25.
    assert metrics.gini([4, 1, 3, 2]) == pytest.approx(0.25)
    # Scale-free.
    assert metrics.gini([40, 10, 30, 20]) == pytest.approx(0.25)


def test_gini_matches_mean_absolute_difference_definition():
    rng = np.random.default_rng(5)
    x = rng.lognormal(0, 1, 200)
    mad = np.abs(x[:, None] - x[None, :]).mean()
    assert metrics.gini(x) == pytest.approx(mad / (2 * x.mean()))


def test_gini_edge_cases():
    assert metrics.gini([]) is None
    assert metrics.gini([0, 0]) is None
    with pytest.raises(ValueError):
        metrics.gini([1, -1])
    with pytest.raises(ValueError):
        metrics.gini([1, float("nan")])


def test_coefficient_of_variation_known_values():
    # Mean 5, population standard deviation 2.
    assert metrics.coefficient_of_variation([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(0.4)
    assert metrics.coefficient_of_variation([3, 3, 3]) == 0
    assert metrics.coefficient_of_variation([]) is None
    assert metrics.coefficient_of_variation([0, 0]) is None


def test_max_min_ratio():
    assert metrics.max_min_ratio([2, 8, 4]) == 4
    assert metrics.max_min_ratio([0, 5]) is None
    assert metrics.max_min_ratio([]) is None


def test_distribution_summary():
    d = metrics.distribution([1, 2, 3, 4])
    assert d.count == 4 and d.total == 10 and d.mean == 2.5 and d.median == 2.5
    assert d.gini == pytest.approx(0.25) and d.max_min == 4
    assert d.spread == pytest.approx(3 / 2.5)
    assert metrics.distribution([]).as_dict()["mean"] is None
    # Negative values (a gap to pace) have a CV and no Gini.
    assert metrics.distribution([-1, 1, 3]).gini is None


def test_histogram_has_open_ends():
    counts = metrics.histogram([0.2, 0.5, 0.69, 0.7, 1.0, 3.0], edges=[0.5, 0.7, 1.1])
    assert counts == [1, 2, 2, 1]
    assert metrics.histogram([], edges=[1, 2]) == [0, 0, 0]
    with pytest.raises(ValueError):
        metrics.histogram([1], edges=[2, 1])


def test_expected_to_date_follows_months_pro_rata():
    months = [
        metrics.MonthTarget(dt.date(2026, 1, 1), dt.date(2026, 1, 31), 100),
        metrics.MonthTarget(dt.date(2026, 2, 1), dt.date(2026, 2, 28), 280),
        metrics.MonthTarget(dt.date(2026, 3, 1), dt.date(2026, 3, 31), 0),
    ]
    assert metrics.expected_to_date(months, dt.date(2025, 12, 31)) == 0
    assert metrics.expected_to_date(months, dt.date(2026, 1, 31)) == 100
    assert metrics.expected_to_date(months, dt.date(2026, 2, 14)) == pytest.approx(100 + 280 * 14 / 28)
    assert metrics.expected_to_date(months, dt.date(2026, 3, 15)) == 380
    assert metrics.pacing(190, 380) == 0.5
    assert metrics.pacing(10, 0) is None


def test_linear_months_spread_by_days():
    months = metrics.linear_months(dt.date(2026, 1, 1), dt.date(2026, 3, 31), 90)
    assert [m.start.month for m in months] == [1, 2, 3]
    assert sum(m.amount for m in months) == pytest.approx(90)
    assert months[1].amount == pytest.approx(90 * 28 / 90)
    assert months[1].end == dt.date(2026, 2, 28)


def test_largest_gap():
    assert metrics.largest_gap({"a": 1.2, "b": 0.7, "c": 1.0}) == ("a", "b", pytest.approx(0.5))
    assert metrics.largest_gap({"a": 1.0}) is None

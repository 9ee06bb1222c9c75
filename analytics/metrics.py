"""Fairness, distribution and pacing figures: plain functions on numbers, no Django.

Used by the dashboards (attainment spread across reps, territory balance) and the warning checks.
Every function accepts any sequence of numbers and returns plain floats, so results go straight
into JSON. Empty input and an all-zero input have defined answers (None where a ratio has no
meaning) instead of NaN or a ZeroDivisionError.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

Numbers = Sequence[float] | np.ndarray


def _array(values: Numbers) -> np.ndarray:
    data = np.asarray(values, dtype=float).ravel()
    if np.isnan(data).any():
        raise ValueError("values contain NaN")
    return data


def coefficient_of_variation(values: Numbers) -> float | None:
    """Population standard deviation over the mean; None when there is nothing or the mean is 0.

    The population form (ddof=0) because the values are every territory or rep in scope, not a
    sample of them."""
    data = _array(values)
    if data.size == 0:
        return None
    mean = float(data.mean())
    if mean == 0:
        return None
    return float(data.std() / abs(mean))


def gini(values: Numbers) -> float | None:
    """Gini coefficient of non-negative values: 0 = all equal, (n-1)/n = one holds everything.

    Computed on sorted values with the closed form G = Σ (2i - n - 1) x_i / (n Σ x), i = 1..n,
    which is exact (no histogram binning). None for an empty or all-zero input; negative values
    have no Gini meaning and raise ValueError."""
    data = _array(values)
    if data.size == 0:
        return None
    if (data < 0).any():
        raise ValueError("Gini is defined for non-negative values only")
    total = float(data.sum())
    if total == 0:
        return None
    data = np.sort(data)
    n = data.size
    ranks = np.arange(1, n + 1, dtype=float)
    return float(np.sum((2 * ranks - n - 1) * data) / (n * total))


def max_min_ratio(values: Numbers) -> float | None:
    """Largest over smallest value; None when empty or the smallest is not positive (a ratio to
    zero is infinite and says less than the spread itself)."""
    data = _array(values)
    if data.size == 0:
        return None
    low = float(data.min())
    if low <= 0:
        return None
    return float(data.max() / low)


@dataclass(frozen=True)
class Distribution:
    """Summary of one set of values (attainment of reps, revenue of territories, ...)."""

    count: int
    total: float
    mean: float | None
    minimum: float | None
    maximum: float | None
    median: float | None
    p10: float | None
    p90: float | None
    std: float | None
    cv: float | None
    gini: float | None
    max_min: float | None
    spread: float | None  # (max - min) / mean, the planners' "potential spread"

    def as_dict(self) -> dict:
        return asdict(self)


def distribution(values: Numbers) -> Distribution:
    """Count, centre, spread and the fairness figures of `values` (Gini only if none negative)."""
    data = _array(values)
    if data.size == 0:
        return Distribution(0, 0.0, None, None, None, None, None, None, None, None, None, None, None)
    mean = float(data.mean())
    low, high = float(data.min()), float(data.max())
    return Distribution(
        count=int(data.size),
        total=float(data.sum()),
        mean=mean,
        minimum=low,
        maximum=high,
        median=float(np.median(data)),
        p10=float(np.percentile(data, 10)),
        p90=float(np.percentile(data, 90)),
        std=float(data.std()),
        cv=coefficient_of_variation(data),
        gini=gini(data) if low >= 0 else None,
        max_min=max_min_ratio(data),
        spread=(high - low) / mean if mean else None,
    )


def histogram(values: Numbers, *, edges: Sequence[float]) -> list[int]:
    """Counts per bin for ascending `edges` (len(edges) + 1 bins): below the first edge, between
    consecutive edges (lower edge included), and at or above the last. Open ends, so an outlier
    rep at 300% attainment is still counted rather than dropped."""
    data = _array(values)
    bounds = np.asarray(edges, dtype=float)
    if bounds.size and (np.diff(bounds) <= 0).any():
        raise ValueError("edges must be strictly ascending")
    bins = np.searchsorted(bounds, data, side="right")
    return [int(n) for n in np.bincount(bins, minlength=bounds.size + 1)]


def ratio(numerator: float, denominator: float | None) -> float | None:
    """numerator / denominator, None when the denominator is missing or zero."""
    if denominator is None or denominator == 0 or math.isnan(denominator):
        return None
    return float(numerator) / float(denominator)


@dataclass(frozen=True)
class MonthTarget:
    """One month's share of a quota: its first and last day (inclusive) and amount."""

    start: dt.date
    end: dt.date
    amount: float


def expected_to_date(months: Sequence[MonthTarget], as_of: dt.date) -> float:
    """What should be booked by the end of `as_of` if the quota's seasonality holds: every month
    that ended by then in full, plus the running month pro rata by days elapsed (as_of included).

    Pro rata by calendar days is the simplest honest reading of a monthly target; a month with no
    bookings expected (amount 0) contributes nothing whatever the day."""
    expected = 0.0
    for month in months:
        if as_of >= month.end:
            expected += month.amount
        elif as_of >= month.start:
            days = (month.end - month.start).days + 1
            elapsed = (as_of - month.start).days + 1
            expected += month.amount * elapsed / days
    return expected


def linear_months(start: dt.date, end: dt.date, amount: float) -> list[MonthTarget]:
    """Spread `amount` over the calendar days from start to end (inclusive) as monthly targets:
    the fallback when a quota has no monthly rows, so pacing is linear rather than missing."""
    if end < start:
        raise ValueError("end is before start")
    total_days = (end - start).days + 1
    months = []
    cursor = start
    while cursor <= end:
        next_month = (cursor.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        month_end = min(end, next_month - dt.timedelta(days=1))
        days = (month_end - cursor).days + 1
        months.append(MonthTarget(cursor, month_end, amount * days / total_days))
        cursor = month_end + dt.timedelta(days=1)
    return months


def pacing(booked: float, expected: float) -> float | None:
    """Booked to date over expected to date: 1.0 = on pace; None before anything is expected."""
    return ratio(booked, expected) if expected > 0 else None


def largest_gap(values: dict[str, float]) -> tuple[str, str, float] | None:
    """The best and worst key by value and the gap between them; None with fewer than two values."""
    if len(values) < 2:
        return None
    best = max(values, key=lambda k: (values[k], k))
    worst = min(values, key=lambda k: (values[k], k))
    return best, worst, float(values[best] - values[worst])

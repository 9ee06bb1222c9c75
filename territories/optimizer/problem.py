"""The optimizer's contract: what a balancing problem is and what a solution reports.

Pure: numpy/scipy only, nothing of Django. The product (territories.balancing) builds a Problem
from a plan and stores a Solution as a new scenario; bench/optimizer.py builds them from synthetic
instances. Entities are accounts or geography units; territories are indices 0..K-1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

ProgressCallback = Callable[[int, str], None]
"""progress(percent 0–100, message); called a few times per second at most."""

StopCallback = Callable[[], bool]
"""should_stop() → True asks the solver to stop early and raise SolveCancelled."""


class InfeasibleProblem(ValueError):
    """The request cannot be met; the message says which entity, territory or metric and why."""


class SolveCancelled(RuntimeError):
    """should_stop() returned True."""


@dataclass
class Problem:
    """One balancing request.

    points: (N, 2) lon/lat in degrees (WGS 84).
    metrics: (N, M) non-negative loads per entity (revenue, workload hours, account count, ...).
    metric_names: M names, used in messages and reasons.
    k: number of territories when designing without anchors; ignored when `anchors` is given.
    anchors: (K, 2) lon/lat of rep home bases; territory j is anchored at anchors[j].
    capacity: (K,) relative capacity (rep FTE) used for default targets; default all 1.
    targets: (K, M) target load per territory and metric; default: totals split by capacity.
    tolerance: (M,) allowed relative deviation from target per metric (0.02 = ±2%), or a scalar.
    weights: (M,) importance of each metric when not everything can be met; default all 1.
    locked: (N,) territory index an entity must keep, or -1; default none locked.
    current: (N,) current territory index (-1 = none), for rebalancing; None = design from scratch.
    disruption_weight: how much moving an entity away from `current` costs, relative to balance.
    adjacency: (N, N) sparse symmetric matrix; when given, every territory must be contiguous.
    eligible: (N, K) bool, which territories each entity may join; None = all.
    time_limit: seconds; the solver returns its best solution when the limit is reached.
    seed: the same seed and inputs give the same solution.
    territory_names: K names used in messages and reasons; default "T0", "T1", ...
    """

    points: np.ndarray
    metrics: np.ndarray
    metric_names: Sequence[str]
    k: int | None = None
    anchors: np.ndarray | None = None
    capacity: np.ndarray | None = None
    targets: np.ndarray | None = None
    tolerance: np.ndarray | float = 0.05
    weights: np.ndarray | None = None
    locked: np.ndarray | None = None
    current: np.ndarray | None = None
    disruption_weight: float = 0.0
    adjacency: sp.spmatrix | None = None
    eligible: np.ndarray | None = None
    time_limit: float = 30.0
    seed: int = 0
    progress: ProgressCallback | None = None
    should_stop: StopCallback | None = None
    territory_names: Sequence[str] | None = None

    @property
    def n(self) -> int:
        return int(self.points.shape[0])

    @property
    def territory_count(self) -> int:
        if self.anchors is not None:
            return int(self.anchors.shape[0])
        if self.targets is not None:
            return int(self.targets.shape[0])
        if self.k is None:
            raise InfeasibleProblem("Give either k (number of territories) or anchors (rep home bases).")
        return int(self.k)


@dataclass
class Solution:
    """What the solver found, with the figures a planner compares scenarios by.

    assignment: (N,) territory index per entity.
    totals, targets, deviation: (K, M); deviation = totals / targets - 1.
    worst_deviation: (M,) max |deviation| per metric.
    within_tolerance: every territory within tolerance on every metric.
    mean_distance_km: mean distance of entities to their territory centre (or anchor).
    kmeans_mean_distance_km: the same for unconstrained k-means on the same points and K.
    compactness_ratio: mean_distance_km / kmeans_mean_distance_km.
    moved: (N,) bool, entity's territory differs from `current` (all False without current).
    moved_share: (M,) share of each metric's total that moved.
    contiguous: (K,) bool per territory when adjacency was given, else None.
    reasons: entity index → a short reason for each moved entity ("T7 revenue was 9% over target").
    """

    assignment: np.ndarray
    metric_names: Sequence[str]
    totals: np.ndarray
    targets: np.ndarray
    deviation: np.ndarray
    worst_deviation: np.ndarray
    within_tolerance: bool
    mean_distance_km: float
    kmeans_mean_distance_km: float
    compactness_ratio: float
    moved: np.ndarray
    moved_share: np.ndarray
    contiguous: np.ndarray | None
    elapsed_seconds: float
    reasons: dict[int, str] = field(default_factory=dict)
    disruption_weight: float = 0.0

    @property
    def moved_count(self) -> int:
        return int(self.moved.sum())


@dataclass
class SweepPoint:
    """One point of the disruption–balance trade-off chart."""

    disruption_weight: float
    moved_share: float  # share of entities moved
    worst_deviation: float  # worst |deviation| over metrics and territories
    compactness_ratio: float
    solution: Solution

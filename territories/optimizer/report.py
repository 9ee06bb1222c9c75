"""Turn a final assignment into the Solution a planner compares scenarios by."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from . import geometry
from .checks import Prepared
from .problem import Problem, Solution


def territory_contiguity(adjacency: sp.csr_matrix, labels: np.ndarray, k: int) -> np.ndarray:
    """(K,) bool: each territory's units form one connected component (an empty one counts as not)."""
    result = np.zeros(k, dtype=bool)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    for j in range(k):
        members = order[bounds[j] : bounds[j + 1]]
        if len(members) == 0:
            continue
        count, _ = connected_components(adjacency[members][:, members], directed=False)
        result[j] = count == 1
    return result


def build_solution(
    prep: Prepared,
    xyz: np.ndarray,
    anchors_xyz: np.ndarray | None,
    labels: np.ndarray,
    reasons: dict[int, str],
    problem: Problem,
    elapsed: float,
) -> Solution:
    """Totals, deviations, compactness against k-means, what moved and why, contiguity."""
    k, m = prep.k, prep.m
    totals = np.zeros((k, m))
    np.add.at(totals, labels, prep.x)
    targets = prep.targets
    safe = np.where(targets > 0, targets, 1.0)
    # A zero target met by a zero total is on target; a zero target with load is reported as +100%.
    deviation = np.where(targets > 0, totals / safe - 1.0, np.where(totals > 0, 1.0, 0.0))
    worst = np.abs(deviation).max(axis=0)
    within = bool((np.abs(deviation) <= prep.tol[None, :] + 1e-9).all())

    centres = anchors_xyz if anchors_xyz is not None else geometry.centroids(xyz, labels, k, xyz[:k])
    mean_km = geometry.mean_distance_km(xyz, labels, centres)
    _, kmeans_km = geometry.kmeans_reference(xyz, k, problem.seed)
    ratio = mean_km / kmeans_km if kmeans_km > 0 else 1.0

    if prep.current is None:
        moved = np.zeros(prep.n, dtype=bool)
    else:
        # Entities that had no territory (new accounts, or their rep left) are placed, not moved.
        moved = (prep.current >= 0) & (labels != prep.current)
    metric_totals = prep.x.sum(axis=0)
    moved_load = prep.x[moved].sum(axis=0)
    moved_share = np.divide(moved_load, metric_totals, out=np.zeros(m), where=metric_totals > 0)

    final_reasons: dict[int, str] = {}
    for i in np.flatnonzero(moved).tolist():
        reason = reasons.get(i)
        if reason is None:
            a = int(prep.current[i]) if prep.current is not None else -1
            if prep.eligible is not None and not prep.eligible[i, a]:
                reason = f"no longer eligible for {prep.territory_names[a]}"
            elif prep.locked[i] >= 0:
                reason = f"locked to {prep.territory_names[prep.locked[i]]}"
            else:
                reason = f"keeps {prep.territory_names[int(labels[i])]} contiguous"
        final_reasons[i] = reason

    contiguous = None
    if prep.adjacency is not None:
        contiguous = territory_contiguity(prep.adjacency, labels, k)
    return Solution(
        assignment=labels.copy(),
        metric_names=list(prep.names),
        totals=totals,
        targets=targets.copy(),
        deviation=deviation,
        worst_deviation=worst,
        within_tolerance=within,
        mean_distance_km=mean_km,
        kmeans_mean_distance_km=kmeans_km,
        compactness_ratio=float(ratio),
        moved=moved,
        moved_share=moved_share,
        contiguous=contiguous,
        elapsed_seconds=float(elapsed),
        reasons=final_reasons,
        disruption_weight=float(problem.disruption_weight),
    )

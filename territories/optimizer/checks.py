"""Input normalisation and the infeasibility checks that run before any search.

Every InfeasibleProblem message names the entity, territory or metric at fault and why, because a
planner reads it in the UI and must know what to change (a lock, a tolerance, an eligibility rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .problem import InfeasibleProblem, Problem


@dataclass
class Prepared:
    """A Problem with every default filled in and every array in its final dtype and shape."""

    n: int
    k: int
    m: int
    names: list[str]
    territory_names: list[str]
    x: np.ndarray  # (N, M) metrics
    targets: np.ndarray  # (K, M)
    tol: np.ndarray  # (M,)
    w: np.ndarray  # (M,) weights, mean 1
    locked: np.ndarray  # (N,) int, -1 = free
    current: np.ndarray | None  # (N,) int, -1 = none
    eligible: np.ndarray | None  # (N, K) bool
    adjacency: sp.csr_matrix | None


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def prepare(problem: Problem) -> Prepared:
    """Fill defaults, validate shapes and raise InfeasibleProblem for requests no plan can meet."""
    points = np.asarray(problem.points, dtype=float)
    x = np.asarray(problem.metrics, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    n = int(points.shape[0])
    if points.shape != (n, 2) or x.shape[0] != n:
        raise ValueError(f"points must be (N, 2) and metrics (N, M); got {points.shape} and {x.shape}.")
    m = int(x.shape[1])
    names = [str(s) for s in problem.metric_names]
    if len(names) != m:
        raise ValueError(f"{m} metric columns but {len(names)} metric names.")
    if not np.isfinite(x).all() or (x < 0).any():
        raise ValueError("metrics must be finite and non-negative.")
    k = problem.territory_count
    if k < 1:
        raise InfeasibleProblem("At least one territory is needed.")
    if n < k:
        raise InfeasibleProblem(f"{k} territories but only {n} entities: some territories would be empty.")
    territory_names = list(problem.territory_names or [f"T{j}" for j in range(k)])
    if len(territory_names) != k:
        raise ValueError(f"{k} territories but {len(territory_names)} territory names.")

    capacity = np.ones(k) if problem.capacity is None else np.asarray(problem.capacity, dtype=float)
    if capacity.shape != (k,) or (capacity <= 0).any():
        raise ValueError("capacity must be (K,) and positive.")
    totals = x.sum(axis=0)
    if problem.targets is None:
        targets = np.outer(capacity / capacity.sum(), totals)
    else:
        targets = np.asarray(problem.targets, dtype=float).reshape(k, m)
    # A metric that is zero everywhere cannot be balanced and needs no balancing: target 0 is met.
    targets = np.where(targets > 0, targets, 0.0)
    tol = np.broadcast_to(np.asarray(problem.tolerance, dtype=float), (m,)).copy()
    w = np.ones(m) if problem.weights is None else np.asarray(problem.weights, dtype=float).reshape(m)
    w = w / w.mean() if w.mean() > 0 else np.ones(m)

    locked = (
        np.full(n, -1, dtype=np.int64) if problem.locked is None else np.asarray(problem.locked, np.int64)
    )
    if locked.shape != (n,) or (locked < -1).any() or (locked >= k).any():
        raise ValueError("locked must be (N,) with values -1 or a territory index 0..K-1.")
    current = None
    if problem.current is not None:
        current = np.asarray(problem.current, dtype=np.int64).copy()
        if current.shape != (n,):
            raise ValueError("current must be (N,).")
        # An entity whose territory no longer exists (rep removed) counts as unassigned.
        current[(current < 0) | (current >= k)] = -1
    eligible = None
    if problem.eligible is not None:
        eligible = np.asarray(problem.eligible, dtype=bool)
        if eligible.shape != (n, k):
            raise ValueError(f"eligible must be (N, K) = ({n}, {k}); got {eligible.shape}.")
        nowhere = np.flatnonzero(~eligible.any(axis=1))
        if len(nowhere):
            raise InfeasibleProblem(
                f"Entity {nowhere[0]} is eligible for no territory ({len(nowhere)} such entities): "
                "every entity must be allowed in at least one."
            )
        bad_lock = np.flatnonzero((locked >= 0) & ~eligible[np.arange(n), np.maximum(locked, 0)])
        if len(bad_lock):
            i = int(bad_lock[0])
            raise InfeasibleProblem(
                f"Entity {i} is locked to {territory_names[locked[i]]} but not eligible for it."
            )
    adjacency = None
    if problem.adjacency is not None:
        adjacency = sp.csr_matrix(problem.adjacency)
        if adjacency.shape != (n, n):
            raise ValueError(f"adjacency must be (N, N) = ({n}, {n}).")
        adjacency = ((adjacency + adjacency.T) != 0).astype(np.int8).tocsr()
        adjacency.setdiag(0)
        adjacency.eliminate_zeros()

    _check_feasible(x, targets, tol, locked, eligible, names, territory_names)
    return Prepared(n, k, m, names, territory_names, x, targets, tol, w, locked, current, eligible, adjacency)


def _check_feasible(
    x: np.ndarray,
    targets: np.ndarray,
    tol: np.ndarray,
    locked: np.ndarray,
    eligible: np.ndarray | None,
    names: list[str],
    territory_names: list[str],
) -> None:
    k, m = targets.shape
    upper = targets * (1 + tol)
    lower = targets * (1 - tol)
    totals = x.sum(axis=0)
    for j_m in range(m):
        if lower[:, j_m].sum() > totals[j_m] * (1 + 1e-9):
            raise InfeasibleProblem(
                f"{names[j_m]}: targets less tolerance add up to {_fmt(lower[:, j_m].sum())}, more than "
                f"the total {_fmt(totals[j_m])}."
            )
        if upper[:, j_m].sum() < totals[j_m] * (1 - 1e-9):
            raise InfeasibleProblem(
                f"{names[j_m]}: targets plus tolerance add up to {_fmt(upper[:, j_m].sum())}, less than "
                f"the total {_fmt(totals[j_m])}."
            )
    is_locked = locked >= 0
    if is_locked.any():
        locked_load = np.zeros((k, m))
        np.add.at(locked_load, locked[is_locked], x[is_locked])
        over = locked_load > upper * (1 + 1e-9)
        if over.any():
            j, j_m = (int(v) for v in np.argwhere(over)[0])
            share = locked_load[j, j_m] / targets[j, j_m] - 1 if targets[j, j_m] > 0 else np.inf
            raise InfeasibleProblem(
                f"{territory_names[j]}: locked entities alone carry {names[j_m]} "
                f"{_fmt(locked_load[j, j_m])}, "
                f"{share:.0%} over its target {_fmt(targets[j, j_m])} (tolerance ±{tol[j_m]:.0%})."
            )
    for j_m in range(m):
        if eligible is None:
            room = np.full(len(x), upper[:, j_m].max())
        else:
            room = np.where(eligible, upper[None, :, j_m], -np.inf).max(axis=1)
        too_big = np.flatnonzero(x[:, j_m] > room * (1 + 1e-9))
        if len(too_big):
            i = int(too_big[np.argmax(x[too_big, j_m])])
            raise InfeasibleProblem(
                f"Entity {i} alone has {names[j_m]} {_fmt(x[i, j_m])}, more than any territory it may join "
                f"can hold ({_fmt(room[i])} = target + {tol[j_m]:.0%}): the tolerance is tighter than "
                "the lumpiest entity allows."
            )

"""The solvers bench/optimizer.py measures, each run in a fresh process of its own.

A fresh process per run keeps peak memory honest (VmHWM read inside the measured process; a child's
ru_maxrss would include its parent's peak) and keeps highspy and k-means-constrained (OR-Tools)
apart: loaded in one process they crash.

    .venv/bin/python bench/optimizer_peers.py SOLVER INSTANCE.npz OUT.npz [CENTRES.npy]

SOLVER is one of SOLVERS. OUT.npz gets status (ok | not available | failed), message, seconds (the
solve alone, imports and loading excluded), peak_mb (the whole process) and, when ok, assignment
plus solver-specific figures (objective, bound, reported_*).
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from optimizer_instances import METRICS, Instance, project_km

SOLVERS = ("ours", "kmeans", "kmeans_constrained", "mip", "lp_bound")


def peak_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_ours(inst: Instance, _centres: np.ndarray | None) -> dict:
    try:
        from territories.optimizer import Problem, solve
    except ImportError as exc:
        return {"status": "not available", "message": str(exc)}
    problem = Problem(
        points=inst.points,
        metrics=inst.metrics,
        metric_names=METRICS,
        k=inst.k,
        tolerance=inst.tolerance,
        adjacency=inst.adjacency,
        current=inst.current,
        # Moving an account costs as much as a unit of imbalance: rebalancing should fix the
        # drift, not redraw the map.
        disruption_weight=1.0 if inst.current is not None else 0.0,
        time_limit=60.0,
        seed=0,
    )
    t = time.perf_counter()
    solution = solve(problem)
    seconds = time.perf_counter() - t
    return {
        "assignment": np.asarray(solution.assignment),
        "seconds": seconds,
        "reported_compactness": float(solution.compactness_ratio),
        "reported_within": bool(solution.within_tolerance),
        "reported_elapsed": float(solution.elapsed_seconds),
    }


def run_kmeans(inst: Instance, _centres: np.ndarray | None) -> dict:
    from sklearn.cluster import KMeans

    xy = project_km(inst.points)
    t = time.perf_counter()
    labels = KMeans(n_clusters=inst.k, n_init=1, random_state=0).fit_predict(xy)
    return {"assignment": labels, "seconds": time.perf_counter() - t}


def run_kmeans_constrained(inst: Instance, _centres: np.ndarray | None) -> dict:
    from k_means_constrained import KMeansConstrained

    xy = project_km(inst.points)
    size = inst.n / inst.k
    model = KMeansConstrained(
        n_clusters=inst.k,
        size_min=int(np.floor(size * (1 - inst.tolerance))),
        size_max=int(np.ceil(size * (1 + inst.tolerance))),
        n_init=1,
        random_state=0,
    )
    t = time.perf_counter()
    labels = model.fit_predict(xy)
    return {"assignment": np.asarray(labels), "seconds": time.perf_counter() - t}


def _highs(
    cost: np.ndarray,
    matrix: sp.csr_matrix,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
    col_upper: np.ndarray,
    integer: bool,
    time_limit: float = 120.0,
) -> tuple[np.ndarray, float, str]:
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", time_limit)
    n = len(cost)
    h.addVars(n, np.zeros(n), col_upper.astype(float))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), cost.astype(float))
    matrix = matrix.tocsr()
    h.addRows(
        matrix.shape[0],
        row_lower.astype(float),
        row_upper.astype(float),
        matrix.nnz,
        matrix.indptr[:-1].astype(np.int32),
        matrix.indices.astype(np.int32),
        matrix.data.astype(float),
    )
    if integer:
        kinds = np.full(n, highspy.HighsVarType.kInteger)
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), kinds)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    values = np.asarray(h.getSolution().col_value)
    return values, float(h.getInfo().objective_function_value), status


def run_mip(inst: Instance, centres: np.ndarray | None) -> dict:
    """Exact assignment to fixed centres: minimise the sum of entity–centre distances (km) so that
    every territory is within tolerance on every metric. With the centres of our own solution, our
    assignment is one feasible point of this MIP, so objective(ours) / objective(MIP) - 1 is our
    optimality gap for the assignment step."""
    if centres is None:
        return {"status": "failed", "message": "no centres given"}
    xy = project_km(inst.points)
    n, k, m = inst.n, inst.k, inst.metrics.shape[1]
    dist = np.linalg.norm(xy[:, None, :] - centres[None, :, :], axis=2)  # (n, k)
    target = inst.metrics.sum(axis=0) / k
    # x[i, j] is column i * k + j.
    rows, cols, vals = [], [], []
    for i in range(n):  # each entity in exactly one territory
        rows += [i] * k
        cols += list(range(i * k, i * k + k))
        vals += [1.0] * k
    for j in range(k):
        for q in range(m):
            rows += [n + j * m + q] * n
            cols += list(np.arange(n) * k + j)
            vals += list(inst.metrics[:, q])
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n + k * m, n * k))
    lower = np.concatenate([np.ones(n), np.tile(target * (1 - inst.tolerance), k)])
    upper = np.concatenate([np.ones(n), np.tile(target * (1 + inst.tolerance), k)])
    t = time.perf_counter()
    x, objective, status = _highs(dist.ravel(), matrix, lower, upper, np.ones(n * k), integer=True)
    seconds = time.perf_counter() - t
    if status != "Optimal":
        return {"status": "failed", "message": f"HiGHS: {status}", "seconds": seconds}
    return {"assignment": x.reshape(n, k).argmax(axis=1), "seconds": seconds, "objective": objective}


def run_lp_bound(inst: Instance, _centres: np.ndarray | None) -> dict:
    """A lower bound on the revenue that must move to bring every territory within tolerance.

    LP relaxation: each existing account may leave its territory fractionally (x_i in [0, 1]); what
    leaves, plus the new accounts, is shared out again, and a receiving territory may take any mix
    of the loads in that pool (a_jm >= 0, summing per metric to the pool). Every real reassignment
    is a feasible point, so the optimum is a true lower bound on moved revenue (possibly loose)."""
    cur = inst.current
    if cur is None:
        return {"status": "failed", "message": "instance has no current plan"}
    k, m = inst.k, inst.metrics.shape[1]
    old = np.flatnonzero(cur >= 0)
    new = np.flatnonzero(cur < 0)
    loads = inst.metrics[old]
    current_totals = np.zeros((k, m))
    np.add.at(current_totals, cur[old], loads)
    target = inst.metrics.sum(axis=0) / k
    n_old = len(old)
    # Columns: x (n_old), then a (k * m). Rows: (j, q) balance, then q conservation.
    rows, cols, vals = [], [], []
    for q in range(m):
        rows.append(cur[old] * m + q)
        cols.append(np.arange(n_old))
        vals.append(-loads[:, q])
    a_cols = n_old + np.arange(k * m)
    rows.append(np.arange(k * m))
    cols.append(a_cols)
    vals.append(np.ones(k * m))
    for q in range(m):
        rows.append(np.full(n_old, k * m + q))
        cols.append(np.arange(n_old))
        vals.append(-loads[:, q])
        rows.append(np.full(k, k * m + q))
        cols.append(n_old + np.arange(k) * m + q)
        vals.append(np.ones(k))
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(k * m + m, n_old + k * m)
    )
    flat_current = current_totals.ravel()
    lower = np.concatenate(
        [np.tile(target * (1 - inst.tolerance), k) - flat_current, inst.metrics[new].sum(axis=0)]
    )
    upper = np.concatenate(
        [np.tile(target * (1 + inst.tolerance), k) - flat_current, inst.metrics[new].sum(axis=0)]
    )
    cost = np.concatenate([loads[:, 0], np.zeros(k * m)])
    col_upper = np.concatenate([np.ones(n_old), np.full(k * m, np.inf)])
    t = time.perf_counter()
    _x, objective, status = _highs(cost, matrix, lower, upper, col_upper, integer=False)
    seconds = time.perf_counter() - t
    if status != "Optimal":
        return {"status": "failed", "message": f"HiGHS: {status}", "seconds": seconds}
    return {"seconds": seconds, "bound": objective}


RUNNERS = {
    "ours": run_ours,
    "kmeans": run_kmeans,
    "kmeans_constrained": run_kmeans_constrained,
    "mip": run_mip,
    "lp_bound": run_lp_bound,
}


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        # `make bench` runs every bench/*.py; this one is only a helper of bench/optimizer.py.
        print("bench/optimizer_peers.py is run by bench/optimizer.py, one solver per process.")
        return 0
    solver, instance_path, out_path = argv[:3]
    centres = np.load(argv[3]) if len(argv) > 3 else None
    inst = Instance.load(Path(instance_path))
    try:
        result = {"status": "ok", "message": ""} | RUNNERS[solver](inst, centres)
    except Exception as exc:  # reported in the table, never hidden: the traceback goes to stderr
        traceback.print_exc()
        result = {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    result["peak_mb"] = peak_mb()
    np.savez(out_path, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

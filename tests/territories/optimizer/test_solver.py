"""The optimizer's pure core: validity, balance, contiguity, rebalancing, sweeps and errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from territories.optimizer import InfeasibleProblem, Problem, SolveCancelled, solve, sweep

ROOT = Path(__file__).resolve().parents[3]
NAMES = ["revenue", "workload"]


def random_instance(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = np.column_stack((rng.uniform(-100, -90, n), rng.uniform(35, 42, n)))
    metrics = np.column_stack((rng.uniform(1, 3, n), rng.uniform(1, 2, n)))
    return points, metrics


def grid(w: int, h: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Cells of a w × h grid (≈ 10 km apart) and their rook adjacency."""
    ix, iy = np.meshgrid(np.arange(w), np.arange(h), indexing="ij")
    ix, iy = ix.ravel(), iy.ravel()
    points = np.column_stack((-95 + ix * 0.1, 38 + iy * 0.1))
    index = ix * h + iy
    rows, cols = [], []
    for dx, dy in ((1, 0), (0, 1)):
        ok = (ix + dx < w) & (iy + dy < h)
        rows.append(index[ok])
        cols.append((ix[ok] + dx) * h + iy[ok] + dy)
    r, c = np.concatenate(rows), np.concatenate(cols)
    adj = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(w * h, w * h))
    return points, (adj + adj.T).tocsr()


def test_importing_the_optimizer_loads_no_django():
    code = (
        "import sys, territories.optimizer; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'rest_framework', 'accounts', 'quotas', 'analytics', 'config'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(20, 120),
    k=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    lock_share=st.floats(0, 0.3),
    restrict=st.booleans(),
)
def test_every_entity_assigned_once_respecting_locks_and_eligibility(n, k, seed, lock_share, restrict):
    points, metrics = random_instance(n, seed)
    rng = np.random.default_rng(seed + 1)
    eligible = np.ones((n, k), dtype=bool)
    if restrict and k > 1:
        eligible = rng.random((n, k)) < 0.6
        eligible[np.arange(n), rng.integers(0, k, n)] = True
    locked = np.full(n, -1)
    to_lock = rng.random(n) < lock_share
    for i in np.flatnonzero(to_lock):
        locked[i] = rng.choice(np.flatnonzero(eligible[i]))
    problem = Problem(
        points=points,
        metrics=metrics,
        metric_names=NAMES,
        k=k,
        tolerance=1.0,
        locked=locked,
        eligible=eligible,
        seed=seed,
    )
    try:
        solution = solve(problem)
    except InfeasibleProblem:
        return  # e.g. random locks alone over a target: covered by the message tests
    a = solution.assignment
    assert a.shape == (n,)
    assert ((a >= 0) & (a < k)).all()
    assert (a[to_lock] == locked[to_lock]).all()
    assert eligible[np.arange(n), a].all()
    assert np.allclose(solution.totals.sum(axis=0), metrics.sum(axis=0))


@settings(max_examples=15, deadline=None)
@given(w=st.integers(4, 12), h=st.integers(4, 12), k=st.integers(2, 5), seed=st.integers(0, 1000))
def test_contiguity_kept_on_grids(w, h, k, seed):
    points, adj = grid(w, h)
    rng = np.random.default_rng(seed)
    metrics = rng.uniform(1, 2, (w * h, 2))
    solution = solve(
        Problem(
            points=points, metrics=metrics, metric_names=NAMES, k=k, adjacency=adj, tolerance=0.2, seed=seed
        )
    )
    assert solution.contiguous is not None
    assert solution.contiguous.all()


def test_contiguous_grid_balances_within_tolerance():
    points, adj = grid(30, 30)
    metrics = np.random.default_rng(3).uniform(1, 2, (900, 2))
    solution = solve(
        Problem(points=points, metrics=metrics, metric_names=NAMES, k=6, adjacency=adj, tolerance=0.05)
    )
    assert solution.contiguous is not None and solution.contiguous.all()
    assert solution.within_tolerance, solution.worst_deviation


def test_same_seed_same_answer():
    points, metrics = random_instance(800, 5)
    problem = Problem(points=points, metrics=metrics, metric_names=NAMES, k=6, tolerance=0.05, seed=7)
    first, second = solve(problem), solve(problem)
    assert np.array_equal(first.assignment, second.assignment)
    assert first.kmeans_mean_distance_km == second.kmeans_mean_distance_km


def test_tolerance_met_with_many_small_entities():
    points, metrics = random_instance(3000, 11)
    metrics = np.column_stack((metrics, np.ones(3000)))
    solution = solve(
        Problem(points=points, metrics=metrics, metric_names=[*NAMES, "accounts"], k=8, tolerance=0.03)
    )
    assert solution.within_tolerance, solution.worst_deviation
    assert (solution.worst_deviation <= 0.03 + 1e-9).all()
    assert solution.compactness_ratio < 1.3
    assert solution.mean_distance_km > 0


def test_default_targets_follow_capacity():
    points, metrics = random_instance(2000, 2)
    capacity = np.array([1.0, 1.0, 2.0])
    solution = solve(
        Problem(points=points, metrics=metrics, metric_names=NAMES, k=3, capacity=capacity, tolerance=0.05)
    )
    assert np.allclose(solution.targets[2], 2 * solution.targets[0])
    assert solution.within_tolerance


def test_entity_eligible_nowhere_is_named():
    points, metrics = random_instance(50, 1)
    eligible = np.ones((50, 3), dtype=bool)
    eligible[17] = False
    with pytest.raises(InfeasibleProblem, match="Entity 17 is eligible for no territory"):
        solve(Problem(points=points, metrics=metrics, metric_names=NAMES, k=3, eligible=eligible))


def test_locked_load_over_target_is_named():
    points, metrics = random_instance(60, 1)
    locked = np.full(60, -1)
    locked[:40] = 2
    with pytest.raises(
        InfeasibleProblem, match=r"T2: locked entities alone carry revenue .* over its target"
    ):
        solve(Problem(points=points, metrics=metrics, metric_names=NAMES, k=3, locked=locked))


def test_tolerance_tighter_than_lumpiest_entity_is_named():
    points, metrics = random_instance(60, 1)
    metrics[9, 0] = metrics[:, 0].sum()  # one account with half the revenue, K = 4
    with pytest.raises(InfeasibleProblem, match=r"Entity 9 alone has revenue .* lumpiest entity"):
        solve(Problem(points=points, metrics=metrics, metric_names=NAMES, k=4, tolerance=0.05))


def test_rebalance_without_drift_moves_nothing():
    points, metrics = random_instance(1500, 4)
    problem = Problem(points=points, metrics=metrics, metric_names=NAMES, k=5, tolerance=0.05)
    design = solve(problem)
    assert design.within_tolerance
    again = solve(
        Problem(
            points=points, metrics=metrics, metric_names=NAMES, k=5, tolerance=0.05, current=design.assignment
        )
    )
    assert again.moved_count == 0
    assert np.array_equal(again.assignment, design.assignment)
    assert again.reasons == {}


def test_rebalance_after_drift_moves_little_and_says_why():
    points, metrics = random_instance(2000, 8)
    design = solve(Problem(points=points, metrics=metrics, metric_names=NAMES, k=5, tolerance=0.05))
    drifted = metrics.copy()
    drifted[design.assignment == 0, 0] *= 1.25  # territory 0's revenue grew 25%
    again = solve(
        Problem(
            points=points, metrics=drifted, metric_names=NAMES, k=5, tolerance=0.05, current=design.assignment
        )
    )
    assert again.within_tolerance, again.worst_deviation
    assert 0 < again.moved_count < 0.15 * 2000
    assert set(again.reasons) == set(np.flatnonzero(again.moved).tolist())
    assert all(("revenue" in r or "workload" in r) and "T" in r for r in again.reasons.values())
    assert any(r.startswith("T0 revenue was") and "over target" in r for r in again.reasons.values())


def test_adding_a_territory_leaves_far_territories_unchanged():
    rng = np.random.default_rng(21)
    n = 4000
    points = np.column_stack((rng.uniform(-110, -80, n), rng.uniform(38, 40, n)))
    metrics = np.column_stack((rng.uniform(1, 2, n), np.ones(n)))
    anchors = np.column_stack((np.linspace(-109, -81, 12), np.full(12, 39.0)))
    design = solve(
        Problem(points=points, metrics=metrics, metric_names=NAMES, anchors=anchors, tolerance=0.03)
    )
    assert design.within_tolerance, design.worst_deviation
    plus = np.vstack((anchors, [[-108.0, 39.5]]))
    grown = solve(
        Problem(
            points=points,
            metrics=metrics,
            metric_names=NAMES,
            anchors=plus,
            tolerance=0.2,
            current=design.assignment,
        )
    )
    assert grown.within_tolerance, grown.worst_deviation
    assert (grown.assignment == 12).sum() > 0
    far = [j for j in range(12) if anchors[j, 0] > -95]
    for j in far:
        assert np.array_equal(design.assignment == j, grown.assignment == j), j


def test_sweep_moves_less_as_disruption_weight_rises():
    points, metrics = random_instance(1500, 6)
    design = solve(Problem(points=points, metrics=metrics, metric_names=NAMES, k=5, tolerance=0.05))
    drifted = metrics * np.random.default_rng(1).uniform(0.7, 1.4, metrics.shape)
    problem = Problem(
        points=points, metrics=drifted, metric_names=NAMES, k=5, tolerance=0.05, current=design.assignment
    )
    points_ = sweep(problem, [0.0, 1.0, 10.0, 1000.0])
    shares = [p.moved_share for p in points_]
    assert shares[-1] <= shares[0]
    assert shares[-1] < shares[0] or shares[0] == 0
    assert points_[-1].worst_deviation >= points_[0].worst_deviation - 1e-9
    assert [p.disruption_weight for p in points_] == [0.0, 1.0, 10.0, 1000.0]


def test_should_stop_cancels():
    points, metrics = random_instance(300, 1)
    problem = Problem(points=points, metrics=metrics, metric_names=NAMES, k=3, should_stop=lambda: True)
    with pytest.raises(SolveCancelled):
        solve(problem)


def test_progress_runs_from_0_to_100():
    points, metrics = random_instance(300, 1)
    seen: list[int] = []
    solve(
        Problem(
            points=points, metrics=metrics, metric_names=NAMES, k=3, progress=lambda p, _msg: seen.append(p)
        )
    )
    assert seen[0] == 0 and seen[-1] == 100
    assert all(0 <= p <= 100 for p in seen)


def island_instance(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mainland clusters plus ~1% of the accounts on a far island (Hawaii-like), 3 metrics."""
    rng = np.random.default_rng(seed)
    centers = np.column_stack((rng.uniform(-120, -75, 30), rng.uniform(30, 46, 30)))
    points = centers[rng.integers(0, 30, n)] + rng.normal(0, 1.5, (n, 2))
    island = rng.choice(n, n // 100, replace=False)
    points[island] = np.column_stack((rng.normal(-157, 0.5, len(island)), rng.normal(20.5, 0.5, len(island))))
    metrics = np.column_stack((rng.lognormal(0, 0.5, n), rng.gamma(4.0, 1.0, n), np.ones(n)))
    return points, metrics, island


def test_far_island_joins_a_mainland_territory_within_tolerance():
    # Regression: the island's centre was among no mainland entity's nearest centres, so prices and
    # single moves could never bring it load and its territory stayed ~60% under target.
    points, metrics, island = island_instance(8000, 4)
    solution = solve(
        Problem(points=points, metrics=metrics, metric_names=[*NAMES, "accounts"], k=40, tolerance=0.05)
    )
    assert solution.within_tolerance, solution.worst_deviation
    holder = np.bincount(solution.assignment[island]).argmax()
    assert (solution.assignment == holder).sum() > len(island)  # the island's territory reached inland
    assert solution.compactness_ratio < 2.0


def moved_revenue_lower_bound(metrics: np.ndarray, current: np.ndarray, k: int, tolerance: float) -> float:
    """LP relaxation: the least revenue share any plan must move to bring every territory within tolerance.

    Fractional entities may split between territories; moving entity i costs its revenue; entities
    without a territory (new accounts) are placed for free.
    """
    from scipy.optimize import linprog

    n, m = metrics.shape
    targets = metrics.sum(axis=0) / k
    cost = np.repeat(metrics[:, 0], k).reshape(n, k)
    has = current >= 0
    cost[np.flatnonzero(has), current[has]] = 0.0
    cost[~has] = 0.0
    var = np.arange(n * k).reshape(n, k)
    a_eq = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), var.ravel())), shape=(n, n * k))
    rows, cols, vals = [], [], []
    for j_m in range(m):
        for j in range(k):
            rows.append(np.full(n, j_m * k + j))
            cols.append(var[:, j])
            vals.append(metrics[:, j_m])
    load = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * k, n * k)
    )
    upper = np.repeat(targets * (1 + tolerance), k)
    lower = np.repeat(targets * (1 - tolerance), k)
    result = linprog(
        cost.ravel(),
        A_ub=sp.vstack((load, -load)).tocsr(),
        b_ub=np.concatenate((upper, -lower)),
        A_eq=a_eq,
        b_eq=np.ones(n),
        bounds=(0, 1),
        method="highs",
    )
    assert result.status == 0, result.message
    return float(result.fun / metrics[:, 0].sum())


def test_rebalance_after_real_drift_moves_close_to_the_lp_bound():
    rng = np.random.default_rng(12)
    n, k = 4000, 10
    points, metrics = random_instance(n + 200, 12)
    design = solve(
        Problem(points=points[:n], metrics=metrics[:n], metric_names=NAMES, k=k, tolerance=0.05, seed=1)
    )
    current = np.r_[design.assignment, np.full(200, -1)]  # 5% new accounts
    keep = np.ones(n + 200, dtype=bool)
    keep[rng.choice(n, 120, replace=False)] = False  # 3% churned
    drifted = metrics.copy()
    drifted[points[:, 0] < -97, 0] *= 1.3  # revenue +30% in the western region
    points, drifted, current = points[keep], drifted[keep], current[keep]
    before = np.zeros((k, 2))
    np.add.at(before, current[current >= 0], drifted[current >= 0])
    assert np.abs(before / before.mean(axis=0) - 1).max() > 0.05  # the drift really broke tolerance
    again = solve(
        Problem(
            points=points,
            metrics=drifted,
            metric_names=NAMES,
            k=k,
            tolerance=0.05,
            current=current,
            disruption_weight=1.0,  # the product's rebalance default
        )
    )
    assert again.within_tolerance, again.worst_deviation
    bound = moved_revenue_lower_bound(drifted, current, k, 0.05)
    assert 0 < bound <= again.moved_share[0] <= 1.5 * bound + 1e-3, (again.moved_share[0], bound)
    assert again.moved_count <= 0.05 * len(current)


def clustered_instance(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Accounts around 40 towns of lognormal size, like the benchmark's city-clustered instances."""
    rng = np.random.default_rng(seed)
    towns = np.column_stack((rng.uniform(-100, -80, 40), rng.uniform(32, 44, 40)))
    size = rng.lognormal(0, 1.5, 40)
    town = rng.choice(40, n, p=size / size.sum())
    spread = 0.05 + 0.1 * np.sqrt(size[town] / size.max())
    points = towns[town] + rng.normal(size=(n, 2)) * spread[:, None]
    revenue = rng.lognormal(0, 0.7, n)
    return points, np.column_stack((revenue, 1 + revenue**0.4, np.ones(n)))


def test_small_design_is_within_2_percent_of_the_exact_assignment():
    # Regression: the heuristics alone stopped 5.9% above the MIP optimum on 300 entities / 6 territories.
    import scipy.sparse as sp
    from scipy.optimize import Bounds, LinearConstraint, milp

    from territories.optimizer import geometry

    rng = np.random.default_rng(5)
    hubs = rng.uniform((-100, 35), (-90, 42), size=(8, 2))
    points = hubs[rng.integers(0, 8, 120)] + rng.normal(0, 0.4, size=(120, 2))
    metrics = np.column_stack((rng.lognormal(0, 0.6, 120), rng.uniform(1, 2, 120)))
    k, tol = 4, 0.05
    solution = solve(Problem(points=points, metrics=metrics, metric_names=NAMES, k=k, tolerance=tol, seed=1))
    assert solution.within_tolerance
    xyz = geometry.unit_vectors(points)
    labels = np.asarray(solution.assignment)
    centres = geometry.centroids(xyz, labels, k, np.zeros((k, 3)))
    dist = np.linalg.norm(xyz[:, None, :] - centres[None, :, :], axis=2)
    ours = dist[np.arange(len(points)), labels].sum()
    n = len(points)
    rows = [np.repeat(np.arange(n), k)] + [np.full(n, n + j * 2 + q) for j in range(k) for q in range(2)]
    cols = [np.arange(n * k)] + [np.arange(n) * k + j for j in range(k) for q in range(2)]
    vals = [np.ones(n * k)] + [metrics[:, q] for j in range(k) for q in range(2)]
    matrix = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))))
    target = metrics.sum(axis=0) / k
    lower = np.r_[np.ones(n), np.tile(target * (1 - tol), k)]
    upper = np.r_[np.ones(n), np.tile(target * (1 + tol), k)]
    exact = milp(
        dist.ravel(),
        constraints=LinearConstraint(matrix, lower, upper),
        integrality=np.ones(n * k),
        bounds=Bounds(0, 1),
    )
    assert exact.x is not None
    assert ours <= 1.02 * exact.fun, (ours, exact.fun)


def test_clustered_design_stays_compact():
    # Bisection seeds plus repair gave 1.59× k-means here; re-centred prices and the polish give ~1.45×.
    points, metrics = clustered_instance(4000, 1)
    solution = solve(
        Problem(points=points, metrics=metrics, metric_names=[*NAMES, "accounts"], k=12, tolerance=0.03)
    )
    assert solution.within_tolerance, solution.worst_deviation
    assert solution.compactness_ratio < 1.5


def test_polish_shortens_distances_without_leaving_the_tolerance():
    from territories.optimizer import geometry, solver
    from territories.optimizer.checks import prepare
    from territories.optimizer.state import Clock, State

    points, metrics = clustered_instance(3000, 2)
    problem = Problem(points=points, metrics=metrics, metric_names=[*NAMES, "accounts"], k=10, tolerance=0.03)
    prep = prepare(problem)
    xyz = geometry.unit_vectors(points)
    weight = (prep.x / prep.x.sum(axis=0)).sum(axis=1)
    # Balanced but ragged: bisection slabs ignore where the towns are.
    labels = geometry.balanced_bisection(xyz, weight, np.ones(prep.k))
    centres = geometry.centroids(xyz, labels, prep.k, xyz[: prep.k])
    state = State(prep, xyz, centres, labels.copy(), 0.5)
    before_dev = np.abs(state.deviation())
    before = geometry.mean_distance_km(xyz, state.labels, centres)
    state.movable_centres = True
    limit = prep.tol * 0.95
    solver._polish(state, solver._candidates(prep, xyz, centres), limit, Clock(problem))
    after_dev = np.abs(state.deviation())
    loads = np.zeros((prep.k, prep.m))
    np.add.at(loads, state.labels, prep.x)
    assert np.allclose(loads, state.loads)
    assert (after_dev <= np.maximum(limit, before_dev) + 1e-9).all()
    final_centres = geometry.centroids(xyz, state.labels, prep.k, centres)
    after = geometry.mean_distance_km(xyz, state.labels, final_centres)
    assert after < 0.98 * before


def exchange_on_strips(seed: int) -> tuple[float, float]:
    """Run the contiguous exchange on lumpy vertical strips; check invariants; (excess before, after)."""
    from territories.optimizer import geometry
    from territories.optimizer.checks import prepare
    from territories.optimizer.contiguity import EDGE, exchange_contiguous
    from territories.optimizer.report import territory_contiguity
    from territories.optimizer.state import Clock, State

    w, h, k = 12, 12, 4
    points, adj = grid(w, h)
    metrics = np.random.default_rng(seed).lognormal(0.0, 0.8, (w * h, 2))
    problem = Problem(points=points, metrics=metrics, metric_names=NAMES, k=k, adjacency=adj, tolerance=0.02)
    prep = prepare(problem)
    xyz = geometry.unit_vectors(points)
    # Vertical strips of three columns: contiguous, and lumpy loads leave them out of tolerance.
    labels = np.repeat(np.arange(k), 3 * h)
    state = State(prep, xyz, geometry.centroids(xyz, labels, k, xyz[:k]), labels.copy(), 0.5)

    def excess() -> float:
        # What every exchange must reduce: squared excess beyond (nearly) the tolerance.
        return float((np.maximum(np.abs(state.deviation()) - prep.tol * EDGE, 0.0) ** 2).sum())

    before = excess()
    exchange_contiguous(state, 0.02, 0.0, Clock(problem))
    loads = np.zeros((k, prep.m))
    np.add.at(loads, state.labels, prep.x)
    assert np.allclose(loads, state.loads)
    assert territory_contiguity(prep.adjacency, state.labels, k).all()
    assert excess() <= before + 1e-12
    return before, excess()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000))
def test_contiguous_exchange_keeps_territories_connected(seed):
    exchange_on_strips(seed)


def test_contiguous_exchange_reduces_excess():
    before, after = exchange_on_strips(0)
    assert before > 0
    assert after < 0.5 * before


def test_chain_passes_load_through_a_full_neighbour():
    # A is one unit over, its only neighbour B is exactly on target, C beyond B one unit under: no move
    # or swap between two territories helps (B would end where A was); A → B → C fixes all three.
    from territories.optimizer import geometry
    from territories.optimizer.checks import prepare
    from territories.optimizer.contiguity import chain_contiguous, exchange_contiguous
    from territories.optimizer.report import territory_contiguity
    from territories.optimizer.state import Clock, State

    w, h, k = 9, 4, 3
    points, adj = grid(w, h)
    metrics = np.ones((w * h, 1))
    problem = Problem(
        points=points, metrics=metrics, metric_names=["accounts"], k=k, adjacency=adj, tolerance=0.05
    )
    prep = prepare(problem)
    xyz = geometry.unit_vectors(points)
    labels = np.repeat(np.arange(k), 3 * h)  # strips of three columns; cell (x, y) is x * h + y
    labels[3 * h] = 0  # A takes B's first cell, B takes C's
    labels[6 * h] = 1
    state = State(prep, xyz, geometry.centroids(xyz, labels, k, xyz[:k]), labels.copy(), 0.5)
    assert np.bincount(state.labels).tolist() == [13, 12, 11]
    exchange_contiguous(state, 0.02, 0.0, Clock(problem))
    assert np.bincount(state.labels).tolist() == [13, 12, 11]
    chain_contiguous(state, 0.02, Clock(problem))
    assert np.bincount(state.labels).tolist() == [12, 12, 12]
    assert territory_contiguity(prep.adjacency, state.labels, k).all()
    loads = np.zeros((k, prep.m))
    np.add.at(loads, state.labels, prep.x)
    assert np.allclose(loads, state.loads)
    assert len(state.reasons) == 2


def regional_drift_instance() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A long east–west band of 16 territories whose west grew: (points, metrics, current, k).

    Like the benchmark's drift, but small: 5% new accounts, 3% churned, and revenue tilted by
    longitude, so the excess has to travel through several territories that are themselves fine.
    """
    n, k, new = 4800, 16, 240
    points, metrics = clustered_instance(n + new, 5)
    # Spread the towns along a band: every territory then has only an east and a west neighbour.
    points[:, 0] = -120 + (points[:, 0] + 100) * 2.0
    points[:, 1] = 38 + (points[:, 1] - 38) * 0.25
    design = solve(
        Problem(
            points=points[:n], metrics=metrics[:n], metric_names=[*NAMES, "accounts"], k=k, tolerance=0.02
        )
    )
    current = np.r_[design.assignment, np.full(new, -1)]
    keep = np.random.default_rng(3).random(n + new) >= 0.03
    drifted = metrics.copy()
    z = (points[:, 0] - points[:, 0].mean()) / points[:, 0].std()
    drifted[:, 0] *= np.exp(-0.12 * z)
    return points[keep], drifted[keep], current[keep], k


def test_regional_drift_flows_across_territories_with_fewer_moves():
    # Regression: greedy border moves moved 4.2× the LP bound's revenue and 2.6% of the accounts here;
    # the transport LP sizes every border's flow at once (3.5×, 2.2%). The bound ignores geography:
    # the excess has to cross every border between the west end and the east, so 1.5× is out of reach.
    points, metrics, current, k = regional_drift_instance()
    before = np.zeros((k, 3))
    np.add.at(before, current[current >= 0], metrics[current >= 0])
    assert np.abs(before / before.mean(axis=0) - 1).max() > 0.08  # several territories out, not one
    solution = solve(
        Problem(
            points=points,
            metrics=metrics,
            metric_names=[*NAMES, "accounts"],
            k=k,
            tolerance=0.05,
            current=current,
            disruption_weight=1.0,
        )
    )
    assert solution.within_tolerance, solution.worst_deviation
    bound = moved_revenue_lower_bound(metrics, current, k, 0.05)
    assert 0 < bound <= solution.moved_share[0] <= 3.8 * bound, (solution.moved_share[0], bound)
    assert solution.moved_count <= 0.024 * (current >= 0).sum()


def test_large_rebalance_plans_flows_on_cells(monkeypatch):
    # Above TRANSPORT_MAX_ENTITIES the LP plans on cells of entities; lowered here so a small regional
    # drift takes that path. Regression: without it the 100k drift case ended 7.6% off target.
    from territories.optimizer import solver as solver_module

    monkeypatch.setattr(solver_module, "TRANSPORT_MAX_ENTITIES", 500)
    points, metrics, current, k = regional_drift_instance()
    locked = np.full(len(points), -1)
    locked[::97] = np.maximum(current[::97], 0)
    solution = solve(
        Problem(
            points=points,
            metrics=metrics,
            metric_names=[*NAMES, "accounts"],
            k=k,
            tolerance=0.05,
            current=current,
            locked=locked,
            disruption_weight=1.0,
        )
    )
    assert solution.within_tolerance, solution.worst_deviation
    assignment = np.asarray(solution.assignment)
    assert (assignment[locked >= 0] == locked[locked >= 0]).all()
    moved = np.flatnonzero((current >= 0) & (assignment != current))
    assert 0 < len(moved) <= 0.08 * (current >= 0).sum()
    assert all(solution.reasons.get(int(i)) for i in moved)


def test_added_rep_is_carved_from_its_neighbours_only():
    # Regression: the new territory pulled load through 14 of the 16 territories and still ended 10%
    # under target; the others' shrunken targets stay within the tolerance, so only a neighbourhood
    # needs to change.
    points, metrics = clustered_instance(4000, 3)
    k = 16
    design = solve(
        Problem(points=points, metrics=metrics, metric_names=[*NAMES, "accounts"], k=k, tolerance=0.02)
    )
    grown = solve(
        Problem(
            points=points,
            metrics=metrics,
            metric_names=[*NAMES, "accounts"],
            k=k + 1,
            tolerance=0.1,
            current=design.assignment,
            disruption_weight=1.0,
        )
    )
    assert grown.within_tolerance, grown.worst_deviation
    members = grown.assignment == k
    assert members.any()
    sums = np.zeros((k, 2))
    np.add.at(sums, design.assignment, points)
    centres = sums / np.bincount(design.assignment, minlength=k)[:, None]
    far = np.argsort(np.linalg.norm(centres - points[members].mean(axis=0), axis=1))[10:]
    changed = grown.assignment != design.assignment
    assert len(np.unique(design.assignment[changed])) <= 8
    assert not (changed & np.isin(design.assignment, far)).any()

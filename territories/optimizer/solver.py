"""solve() and sweep(): balanced seeds, load prices, repair moves, contiguity and the report.

Phases: (1) start — balanced bisection seeds when designing, `current` when rebalancing;
(2) prices — each entity joins the cheapest of its ~8 nearest centres, cost = distance + a
per-territory, per-metric price on load, prices rise where a territory is over target; (3) repair —
greedy single-entity moves ranked by exact gain (balance beyond an inner tolerance, distance,
disruption), re-checked against live loads before they are applied; (4) contiguity repair and
connectivity-preserving moves when adjacency is given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy.spatial import cKDTree

from . import geometry
from .checks import Prepared, prepare
from .contiguity import make_contiguous, repair_contiguous
from .problem import Problem, Solution, SweepPoint
from .report import build_solution
from .state import Clock, State, reason

CANDIDATES = 8
REVERSE_COLUMNS = 2
REVERSE_REACH = 2.0
LATE_BETA = 0.1
STALL_ROUNDS = 5
EXCHANGE_BUDGET = 20_000
# Aim inside the tolerance so the last greedy moves do not stop exactly on its edge. Rebalancing aims
# closer to the edge: every extra point of margin is revenue moved that balance did not require.
DESIGN_MARGIN = 0.5
REBALANCE_MARGIN = 0.85


def _candidates(prep: Prepared, xyz: np.ndarray, centres: np.ndarray, reverse: bool = True) -> np.ndarray:
    """(N, C + E) territory candidates per entity: nearest eligible centres, then reverse candidates.

    Nearest centres alone leave a remote territory (an island) that no mainland entity lists: it can
    never gain load and stays far under target. So every territory also offers itself to its nearest
    entities (E extra columns, nearest territory first); the current territory and locks come last.
    """
    c = min(CANDIDATES, prep.k)
    _, cand = cKDTree(centres).query(xyz, k=c)
    cand = np.asarray(cand, dtype=np.int64).reshape(prep.n, c)
    rows = np.arange(prep.n)
    if prep.eligible is not None:
        ok = prep.eligible[rows[:, None], cand]
        fix = np.flatnonzero(~ok.all(axis=1))
        if len(fix):
            # Rare rows whose nearest centres are not all eligible: rank all eligible centres instead.
            d = np.linalg.norm(xyz[fix, None, :] - centres[None, :, :], axis=2)
            d[~prep.eligible[fix]] = np.inf
            order = np.argsort(d, axis=1, kind="stable")[:, :c]
            first = order[:, :1]
            cand[fix] = np.where(np.isfinite(np.take_along_axis(d, order, 1)), order, first)
    if reverse:
        cand = np.hstack((cand, _reverse_candidates(prep, xyz, centres, cand)))
    if prep.current is not None:
        cur = prep.current
        has = cur >= 0
        missing = has & ~(cand == cur[:, None]).any(axis=1)
        cand[missing, -1] = cur[missing]
    lk = prep.locked >= 0
    cand[lk] = prep.locked[lk, None]
    return cand


def _reverse_candidates(prep: Prepared, xyz: np.ndarray, centres: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """(N, E) territories that chose the entity among their nearest ones; padding repeats cand[:, 0]."""
    extra = np.repeat(cand[:, :1], REVERSE_COLUMNS, axis=1)
    if prep.k <= cand.shape[1]:
        return extra
    # Twice a territory's share of entities reaches past its own members into its neighbours'.
    r = min(prep.n, int(np.ceil(REVERSE_REACH * prep.n / prep.k)))
    dist, near = cKDTree(xyz).query(centres, k=r)
    near = np.asarray(near, dtype=np.int64).reshape(prep.k, r).ravel()
    dist = np.asarray(dist, dtype=float).reshape(prep.k, r).ravel()
    terr = np.repeat(np.arange(prep.k), r)
    fresh = ~(cand[near] == terr[:, None]).any(axis=1)
    if prep.eligible is not None:
        fresh &= prep.eligible[near, terr]
    near, dist, terr = near[fresh], dist[fresh], terr[fresh]
    order = np.lexsort((dist, near))
    near, terr = near[order], terr[order]
    starts = np.flatnonzero(np.r_[True, near[1:] != near[:-1]])
    rank = np.arange(len(near)) - np.repeat(starts, np.diff(np.r_[starts, len(near)]))
    keep = rank < REVERSE_COLUMNS
    extra[near[keep], rank[keep]] = terr[keep]
    return extra


def _price_phase(
    prep: Prepared, xyz: np.ndarray, centres: np.ndarray, movable_centres: bool, clock: Clock, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Assign by distance + load prices; prices follow the deviation until loads balance."""
    rows = np.arange(prep.n)
    mean_x = prep.x.mean(axis=0)
    rel = np.divide(prep.x, mean_x, out=np.zeros_like(prep.x), where=mean_x > 0)
    inv_t = np.where(prep.targets > 0, 1.0 / np.where(prep.targets > 0, prep.targets, 1.0), 0.0)
    lam = np.zeros((prep.k, prep.m))
    # Prices move too slowly to pull load across an ocean; the repair's reverse candidates do that.
    cand = _candidates(prep, xyz, centres, reverse=False)
    dist = np.linalg.norm(xyz[:, None, :] - centres[cand], axis=2)
    scale = max(float(dist[:, 0].mean()), 1e-12)
    dist /= scale
    labels = cand[:, 0].copy()
    best_labels, best_score = labels.copy(), np.inf
    for t in range(iterations):
        cost = dist + np.einsum("ncm,nm->nc", lam[cand], rel)
        labels = cand[rows, np.argmin(cost, axis=1)]
        loads = np.zeros((prep.k, prep.m))
        np.add.at(loads, labels, prep.x)
        dev = loads * inv_t - 1.0
        score = float((np.maximum(np.abs(dev) - prep.tol * DESIGN_MARGIN, 0) * prep.w).max())
        if score <= best_score:
            best_labels, best_score = labels.copy(), score
        # The step shrinks so prices settle instead of oscillating between neighbours.
        settle = max(t - 30, 0) if movable_centres else t
        step = (0.3 * 0.93**settle + 0.01) / prep.m
        lam += step * np.clip(dev, -0.5, 0.5) * prep.w
        if movable_centres and t % 5 == 4 and t < 30:
            centres = geometry.centroids(xyz, labels, prep.k, centres)
            cand = _candidates(prep, xyz, centres, reverse=False)
            dist = np.linalg.norm(xyz[:, None, :] - centres[cand], axis=2) / scale
        clock.tick(10 + int(40 * t / iterations), "balancing loads")
        if clock.out_of_time():
            break
    return best_labels, centres


def _repair(state: State, cand: np.ndarray, beta: float, dw: float, clock: Clock, rounds: int = 150) -> None:
    """Greedy improving moves to candidate territories, re-checked one by one against live loads."""
    prep = state.prep
    xyz, centres = state.xyz, state.centres
    movable = prep.locked < 0
    cur = prep.current
    dist = np.linalg.norm(xyz[:, None, :] - centres[cand], axis=2)
    scale = max(float(dist.min(axis=1).mean()), 1e-12)
    dist /= scale
    rows = np.arange(prep.n)
    x, inv_t = prep.x, state.inv_t
    for r in range(rounds):
        dev = state.deviation()
        pen = state.penalty(dev)
        # Good enough is inside 90% of the tolerance: the last fractions of a point cost many rounds.
        if not (pen > 0).any() or (np.abs(dev) <= 0.9 * prep.tol).all():
            break
        labels = state.labels
        own = np.linalg.norm(xyz - centres[labels], axis=1) / scale
        src_gain = state.penalty(dev[labels] - x * inv_t[labels]) - pen[labels]
        dst_gain = state.penalty(dev[cand] + x[:, None, :] * inv_t[cand]) - pen[cand]
        balance = src_gain[:, None] + dst_gain
        total = balance + beta * (dist - own[:, None])
        if cur is not None and dw > 0:
            leave = dw * state.size * (labels == cur)
            back = dw * state.size[:, None] * (cand == cur[:, None])
            total += leave[:, None] - back
        # Only moves that help balance: distance and disruption price them, they never motivate one.
        total[(cand == labels[:, None]) | ~movable[:, None] | (balance >= -1e-12)] = np.inf
        best = np.argmin(total, axis=1)
        best_total = total[rows, best]
        order = np.flatnonzero(best_total < -1e-12)
        if len(order) == 0:
            break
        # Round-robin over (from, to) territory pairs: the best few moves of every pair come before the
        # tenth-best of any one pair, since after a few moves that pair's loads have changed anyway.
        pair = labels[order] * prep.k + cand[order, best[order]]
        by_pair = np.lexsort((best_total[order], pair))
        sorted_pairs = pair[by_pair]
        starts = np.flatnonzero(np.r_[True, sorted_pairs[1:] != sorted_pairs[:-1]])
        rank = np.arange(len(by_pair)) - np.repeat(starts, np.diff(np.r_[starts, len(by_pair)]))
        order = order[by_pair[np.lexsort((best_total[order][by_pair], rank))]][: max(5000, 50 * prep.k)]
        applied = 0
        loads = state.loads.tolist()
        size = state.size.tolist()
        cur_list = cur.tolist() if cur is not None else None
        for i in order.tolist():
            a, c = int(labels[i]), int(best[i])
            b = int(cand[i, c])
            balance_gain = state.scalar_gain(loads, i, a, b)
            if balance_gain >= -1e-12:
                continue
            gain = balance_gain + beta * (float(dist[i, c]) - float(own[i]))
            if cur_list is not None and dw > 0:
                gain += dw * size[i] * (float(cur_list[i] == a) - float(cur_list[i] == b))
            if gain < -1e-12:
                d_a = np.asarray(loads[a]) * inv_t[a] - 1.0
                d_b = np.asarray(loads[b]) * inv_t[b] - 1.0
                state.reasons[i] = reason(state, a, b, d_a, d_b)
                state.move_lists(loads, i, b)
                applied += 1
        state.loads = np.asarray(loads, dtype=float)
        clock.tick(50 + int(40 * r / rounds), "repairing balance")
        if applied == 0 or clock.out_of_time():
            break


def _exchange(
    state: State, cand: np.ndarray, beta: float, dw: float, clock: Clock, rounds: int = 100, pool: int = 120
) -> None:
    """Pairwise exchanges between neighbouring territories for what single moves cannot fix.

    With lumpy entities every single move overshoots some metric (one big account fixes revenue and
    breaks the count); trading entity i of a for entity j of b moves only the difference. Each round
    tries, for every territory still out of tolerance, every (i, j) pair among the `pool` entities of
    a and of a neighbour b closest to the other side; "nobody" is in both lists, so plain single moves
    compete too. Ranked like the repair: balance first, distance and disruption break ties.
    """
    prep = state.prep
    x, inv_t, xyz = prep.x, state.inv_t, state.xyz
    cur = prep.current
    movable = prep.locked < 0
    scale = max(float(np.linalg.norm(xyz - state.centres[state.labels], axis=1).mean()), 1e-12)
    zero = np.zeros((1, prep.m))
    best_worst, stalled = np.inf, 0
    # A fixed budget of (a, b) pair evaluations rather than seconds keeps the answer deterministic.
    budget = EXCHANGE_BUDGET
    for _round in range(rounds):
        dev = state.deviation()
        excess = (np.maximum(np.abs(dev) - prep.tol, 0.0) * prep.w).max(axis=1)
        bad = np.flatnonzero(excess > 0)
        if len(bad) == 0:
            break
        # Tight tolerances on a few entities per territory can be infeasible: stop once the worst
        # territory has not improved for a while instead of cycling through the rounds.
        worst = float(excess.sum())
        stalled = 0 if worst < best_worst * (1 - 1e-3) else stalled + 1
        best_worst = min(best_worst, worst)
        if stalled >= STALL_ROUNDS:
            break
        labels = state.labels
        ok = movable[:, None] & (cand != labels[:, None])
        if prep.eligible is not None:
            ok &= prep.eligible[np.arange(prep.n)[:, None], cand]
        rows_ok, cols_ok = np.nonzero(ok)
        # (entity, territory it may join) pairs, grouped by (own territory, other territory).
        ent, other = rows_ok, cand[rows_ok, cols_ok]
        key = labels[ent] * prep.k + other
        order = np.argsort(key, kind="stable")
        ent, key = ent[order], key[order]
        bounds = np.searchsorted(key, np.arange(prep.k * prep.k + 1))
        pair_count = np.diff(bounds).reshape(prep.k, prep.k)
        applied = 0
        for a in bad[np.argsort(-excess[bad], kind="stable")].tolist():
            best: tuple[float, int, int, int] | None = None
            dev = state.deviation()
            pen_now = state.penalty(dev)
            for b in np.flatnonzero((pair_count[a] > 0) | (pair_count[:, a] > 0)).tolist():
                budget -= 1
                out_a = ent[bounds[a * prep.k + b] : bounds[a * prep.k + b + 1]]
                out_b = ent[bounds[b * prep.k + a] : bounds[b * prep.k + a + 1]]
                if b == a or (len(out_a) == 0 and len(out_b) == 0):
                    continue
                out_a = np.unique(out_a[state.labels[out_a] == a])
                out_b = np.unique(out_b[state.labels[out_b] == b])
                da = (
                    np.linalg.norm(xyz[out_a] - state.centres[b], axis=1)
                    - np.linalg.norm(xyz[out_a] - state.centres[a], axis=1)
                ) / scale
                db = (
                    np.linalg.norm(xyz[out_b] - state.centres[a], axis=1)
                    - np.linalg.norm(xyz[out_b] - state.centres[b], axis=1)
                ) / scale
                # Closest to the other side first: the pool stays small and the exchange compact.
                out_a, da = out_a[np.argsort(da)[:pool]], np.sort(da)[:pool]
                out_b, db = out_b[np.argsort(db)[:pool]], np.sort(db)[:pool]
                xa = np.vstack((zero, x[out_a]))
                xb = np.vstack((zero, x[out_b]))
                delta = xa[:, None, :] - xb[None, :, :]
                balance = (
                    state.penalty(dev[a] - delta * inv_t[a])
                    + state.penalty(dev[b] + delta * inv_t[b])
                    - pen_now[a]
                    - pen_now[b]
                )
                cost_a = np.r_[0.0, da]
                cost_b = np.r_[0.0, db]
                if cur is not None and dw > 0:
                    size = state.size
                    cost_a[1:] += (
                        dw / beta * size[out_a] * ((cur[out_a] == a).astype(float) - (cur[out_a] == b))
                    )
                    cost_b[1:] += (
                        dw / beta * size[out_b] * ((cur[out_b] == b).astype(float) - (cur[out_b] == a))
                    )
                total = balance + beta * (cost_a[:, None] + cost_b[None, :])
                total[balance >= -1e-12] = np.inf
                total[0, 0] = np.inf
                flat = int(np.argmin(total))
                value = float(total.flat[flat])
                if value < -1e-12 and (best is None or value < best[0]):
                    p, q = divmod(flat, len(xb))
                    best = (value, b, int(out_a[p - 1]) if p else -1, int(out_b[q - 1]) if q else -1)
            if best is None:
                continue
            _, b, i, j = best
            d_a, d_b = state.deviation()[a], state.deviation()[b]
            if i >= 0:
                state.reasons[i] = reason(state, a, b, d_a, d_b)
                state.move(i, b)
            if j >= 0:
                state.reasons[j] = reason(state, b, a, d_b, d_a)
                state.move(j, a)
            applied += 1
        clock.tick(90, "exchanging accounts between neighbours")
        if applied == 0 or budget <= 0 or clock.out_of_time():
            break


def _within(state: State) -> bool:
    return bool((np.abs(state.deviation()) <= state.prep.tol + 1e-9).all())


def _initial_centres(
    prep: Prepared, xyz: np.ndarray, anchors_xyz: np.ndarray | None, seed: int
) -> np.ndarray:
    if anchors_xyz is not None:
        return anchors_xyz
    weight = (prep.x / np.maximum(prep.x.sum(axis=0), 1e-300)).sum(axis=1) + 1e-9
    shares = prep.targets.sum(axis=1) if prep.targets.sum() > 0 else np.ones(prep.k)
    labels = geometry.balanced_bisection(xyz, weight, shares)
    fallback = xyz[np.random.default_rng(seed).choice(prep.n, prep.k, replace=False)]
    return geometry.centroids(xyz, labels, prep.k, fallback)


def _rebalance_start(
    prep: Prepared, xyz: np.ndarray, anchors_xyz: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and labels from `current`; new or orphaned entities join their nearest eligible centre."""
    assert prep.current is not None
    cur = prep.current
    has = cur >= 0
    fallback = np.zeros((prep.k, 3))
    if anchors_xyz is not None:
        centres = anchors_xyz.copy()
    else:
        centres = geometry.centroids(xyz[has], cur[has], prep.k, fallback)
        empty = np.flatnonzero(np.bincount(cur[has], minlength=prep.k) == 0)
        if len(empty):
            # A territory nobody belongs to yet starts where the current centres are farthest away.
            filled = np.setdiff1d(np.arange(prep.k), empty)
            for j in empty.tolist():
                d, _ = cKDTree(centres[filled]).query(xyz)
                pick = int(np.argmax(d))
                centres[j] = xyz[pick]
                filled = np.append(filled, j)
    labels = cur.copy()
    if prep.eligible is not None:
        bad = has & ~prep.eligible[np.arange(prep.n), np.maximum(cur, 0)]
        labels[bad] = -1
    lk = prep.locked >= 0
    labels[lk] = prep.locked[lk]
    todo = np.flatnonzero(labels < 0)
    if len(todo):
        d = np.linalg.norm(xyz[todo, None, :] - centres[None, :, :], axis=2)
        if prep.eligible is not None:
            d[~prep.eligible[todo]] = np.inf
        labels[todo] = np.argmin(d, axis=1)
    return centres, labels


def solve(problem: Problem) -> Solution:
    """Balance entities into territories; see Problem and Solution for the contract.

    Raises InfeasibleProblem before searching when no plan can meet the request, and SolveCancelled
    when problem.should_stop() turns True. Deterministic for a given seed and inputs.
    """
    clock = Clock(problem)
    clock.tick(0, "checking the request")
    prep = prepare(problem)
    xyz = geometry.unit_vectors(np.asarray(problem.points, dtype=float))
    anchors_xyz = None
    if problem.anchors is not None:
        anchors_xyz = geometry.unit_vectors(np.asarray(problem.anchors, dtype=float).reshape(prep.k, 2))
    clock.tick(5, "placing seeds")
    rebalancing = prep.current is not None
    if rebalancing:
        centres, labels = _rebalance_start(prep, xyz, anchors_xyz)
        margin, beta = REBALANCE_MARGIN, 0.02
    else:
        centres = _initial_centres(prep, xyz, anchors_xyz, problem.seed)
        labels, centres = _price_phase(prep, xyz, centres, anchors_xyz is None, clock, iterations=50)
        if anchors_xyz is None:
            centres = geometry.centroids(xyz, labels, prep.k, centres)
        margin, beta = DESIGN_MARGIN, 0.2
    state = State(prep, xyz, centres, labels.copy(), margin)
    if prep.adjacency is not None:
        make_contiguous(state, clock)
        repair_contiguous(state, beta, problem.disruption_weight, clock)
    else:
        cand = _candidates(prep, xyz, centres)
        _repair(state, cand, beta, problem.disruption_weight, clock)
        if not _within(state) and not rebalancing and not clock.out_of_time():
            # A territory that had to reach far (an island pulling mainland load) has moved centre, and
            # distance to its old centre vetoed balance moves: re-centre, and let balance lead.
            if anchors_xyz is None:
                state.centres = geometry.centroids(xyz, state.labels, prep.k, state.centres)
            cand = _candidates(prep, xyz, state.centres)
            _repair(state, cand, beta * LATE_BETA, problem.disruption_weight, clock)
        if not _within(state) and not clock.out_of_time():
            _exchange(
                state, cand, beta * (LATE_BETA if not rebalancing else 1.0), problem.disruption_weight, clock
            )
    clock.tick(95, "reporting")
    solution = build_solution(
        prep, xyz, anchors_xyz, state.labels, state.reasons, problem, time.perf_counter() - clock.start
    )
    clock.tick(100, "done")
    return solution


def sweep(problem: Problem, weights: Sequence[float]) -> list[SweepPoint]:
    """Solve once per disruption weight → (moved share, worst deviation, compactness) trade-off points."""
    points = []
    for dw in weights:
        sol = solve(replace(problem, disruption_weight=float(dw)))
        points.append(
            SweepPoint(
                disruption_weight=float(dw),
                moved_share=float(sol.moved.mean()) if len(sol.moved) else 0.0,
                worst_deviation=float(sol.worst_deviation.max()) if sol.worst_deviation.size else 0.0,
                compactness_ratio=sol.compactness_ratio,
                solution=sol,
            )
        )
    return points

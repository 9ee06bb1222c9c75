"""solve() and sweep(): balanced seeds, load prices, repair moves, contiguity and the report.

Phases: (1) start — balanced bisection seeds when designing, `current` when rebalancing;
(2) capacitated k-means — each entity joins the cheapest of its ~8 nearest centres (plus reverse
candidates), cost = distance + a per-territory price on combined load that rises where a territory
is over target; centres move to their members between price rounds; (3) repair —
greedy single-entity moves ranked by exact gain (balance beyond an inner tolerance, distance,
disruption), re-checked against live loads before they are applied, then pairwise exchanges;
rebalancing first plans the flows between territories with one LP over border entities (transport.py;
an added territory is carved from its nearest neighbourhood only); (4) designs only: a polish that
swaps entities to nearer centres within the tolerance; with adjacency instead, contiguity repair,
connectivity-preserving moves and swaps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.spatial import cKDTree

from . import geometry, transport
from .checks import Prepared, prepare
from .contiguity import chain_contiguous, exchange_contiguous, make_contiguous, repair_contiguous
from .problem import Problem, Solution, SweepPoint
from .report import build_solution
from .state import Clock, StallGuard, State, excess_by_territory, reason

CANDIDATES = 8
# A design's balance moves rarely go past the sixth-nearest centre, and each column costs a pass
# over every entity per round; the late repair and rebalancing keep all eight.
DESIGN_CANDIDATES = 6
REVERSE_COLUMNS = 2
REVERSE_REACH = 2.0
LATE_BETA = 0.1
STALL_ROUNDS = 5
REPAIR_STALL_ROUNDS = 2
POLISH_ROUNDS = 8
OUTER_ROUNDS = 6
PRICE_TOLERANCE = 0.005
# 20,000 took 20-30 s on the 100k drift instance and left its worst territory where 4,000 did.
EXCHANGE_BUDGET = 4_000
# Aim inside the tolerance so the last greedy moves do not stop exactly on its edge. Rebalancing aims
# closer to the edge: every extra point of margin is revenue moved that balance did not require.
DESIGN_MARGIN = 0.5
REBALANCE_MARGIN = 0.85
# Below REBALANCE_MARGIN: a polished design re-run as a rebalance must find nothing to repair.
POLISH_LIMIT = 0.8
# The transport LP (rebalancing) aims this close to the tolerance, less two mean entities: every point
# of margin is revenue moved that balance did not require, and rounding its few fractional moves costs
# about an entity per territory.
TRANSPORT_MARGIN = 0.97
TRANSPORT_ROUNDS = 3
# Unrestricted, the LP has a column per entity and border. At 100k accounts it took 5-16 s, and border
# pools small enough to be fast could not carry a region's excess across (the LP kept slack and the
# result moved 12-15% of revenue, against 10.6% for the greedy repair), so large plans keep the repair.
TRANSPORT_MAX_ENTITIES = 25_000
# Above that, the LP plans on cells instead: runs of COARSE_CELL entities of one territory along a
# Morton curve (neighbours in space), moved whole; the account-level repair then trims what a whole
# cell overshot. Regional drift needs flows that skip past a full neighbour, and with the nearest 8
# centres the cell LP kept slack (ended 8.6% off on the 100k drift case); 16 brought it within ±5%.
COARSE_CELL = 20
# Small designs finish with the exact assignment to their centres (a MIP, HiGHS): the heuristics
# stopped 5.9% above it on 300 entities / 6 territories; HiGHS proves that size optimal in about a
# second. Beyond this many entity×territory variables it takes too long to be worth the wait.
EXACT_MAX_VARIABLES = 3_000
EXACT_ROUNDS = 3
EXACT_SECONDS = 3.0
COARSE_CANDIDATES = 16
# A cell ends where the curve jumps farther than this share of the mean entity-to-centre distance.
COARSE_JUMP = 0.25
# A territory added to a plan is carved from the territories around it: the nearest this many old
# centres first, more only when they cannot fill it without leaving the tolerance themselves.
NEIGHBOURHOODS = (2, 4, 6, 8, 12, 16, 24, 32)


def _candidates(
    prep: Prepared, xyz: np.ndarray, centres: np.ndarray, reverse: bool = True, nearest: int = CANDIDATES
) -> np.ndarray:
    """(N, C + E) territory candidates per entity: nearest eligible centres, then reverse candidates.

    Nearest centres alone leave a remote territory (an island) that no mainland entity lists: it can
    never gain load and stays far under target. So every territory also offers itself to its nearest
    entities (E extra columns, nearest territory first); the current territory and locks come last.
    """
    c = min(nearest, prep.k)
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
    """Capacitated k-means: balance a combined load with per-territory prices, then re-centre.

    One price per territory on the weighted mean of the relative metrics: per-metric prices fought
    each other (the previous version ended ~50% off target at 100k accounts), and adding them on top
    of a settled combined price gained little; the repair trades the per-metric differences instead.
    Centres move to their members only between price rounds: moving them every few price steps lets
    them chase the dense cities and the prices never catch up.
    """
    rows = np.arange(prep.n)
    mean_x = prep.x.mean(axis=0)
    safe_mean = np.where(mean_x > 0, mean_x, 1.0)
    rel = np.divide(prep.x, mean_x, out=np.zeros_like(prep.x), where=mean_x > 0)
    size = (rel * prep.w).mean(axis=1)
    target = (prep.targets / safe_mean * prep.w).mean(axis=1)
    inv = np.where(target > 0, 1.0 / np.where(target > 0, target, 1.0), 0.0)
    lam = np.zeros(prep.k)
    step = np.full(prep.k, 0.2)
    prev = np.zeros(prep.k)
    outer = OUTER_ROUNDS if movable_centres else 1
    best_labels, best_score = None, np.inf
    for o in range(outer):
        last = o == outer - 1
        # Reverse candidates let a starved territory whose members all chose it already bid for its
        # neighbours' entities; without them K = 200 stalled ~20% off target.
        cand = _candidates(prep, xyz, centres, reverse=True, nearest=DESIGN_CANDIDATES)
        dist = np.linalg.norm(xyz[:, None, :] - centres[cand], axis=2)
        dist /= max(float(dist[:, 0].mean()), 1e-12)
        for _t in range(iterations * (2 if last else 1)):
            labels = cand[rows, np.argmin(dist + lam[cand], axis=1)]
            dev = np.bincount(labels, weights=size, minlength=prep.k) * inv - 1.0
            score = float(np.abs(dev).max())
            if last and score < best_score:
                best_labels, best_score = labels, score
            if score < PRICE_TOLERANCE:
                break
            # Rprop: a price that keeps pushing the same way speeds up, one that overshoots slows
            # down; fixed steps either crawl at K = 200 or oscillate between neighbouring cities.
            sign = np.sign(dev)
            agree = sign * prev
            step = np.clip(np.where(agree > 0, step * 1.3, np.where(agree < 0, step * 0.5, step)), 1e-4, 2.0)
            lam += step * sign * np.minimum(np.abs(dev) / 0.02, 1.0)
            prev = sign
        clock.tick(10 + int(40 * o / outer), "balancing loads")
        if clock.out_of_time():
            break
        if movable_centres and not last:
            centres = geometry.centroids(xyz, labels, prep.k, centres)
    return (labels if best_labels is None else best_labels), centres


def _repair(state: State, cand: np.ndarray, beta: float, dw: float, clock: Clock, rounds: int = 150) -> None:
    """Greedy improving moves to candidate territories, re-checked one by one against live loads."""
    prep = state.prep
    xyz, centres = state.xyz, state.centres
    movable = prep.locked < 0
    cur = prep.current
    dist = np.linalg.norm(xyz[:, None, :] - centres[cand], axis=2)
    scale = max(float(dist.min(axis=1).mean()), 1e-12)
    dist /= scale
    x, inv_t = prep.x, state.inv_t
    guard = StallGuard(REPAIR_STALL_ROUNDS, 1e-2)
    for r in range(rounds):
        dev = state.deviation()
        pen = state.penalty(dev)
        # Good enough is inside 90% of the tolerance: the last fractions of a point cost many rounds.
        outside = np.maximum(np.abs(dev) - 0.9 * prep.tol, 0.0)
        if not (pen > 0).any() or not outside.any():
            break
        # Distance can veto the last moves a territory needs: rounds of a few moves each that leave the
        # excess where it was are the later phases' job, not worth a full pass over every entity.
        if guard.stalled_after(float(outside.sum())):
            break
        labels = state.labels
        # A move between two territories both inside the inner tolerance can only add penalty: rows
        # touching none of the penalised territories are skipped (most of them once balance is near).
        hot = pen > 0
        act = np.flatnonzero(movable & (hot[labels] | hot[cand].any(axis=1)))
        la, ca = labels[act], cand[act]
        xa = x[act]
        own = np.linalg.norm(xyz[act] - centres[la], axis=1) / scale
        src_gain = state.penalty(dev[la] - xa * inv_t[la]) - pen[la]
        dst_gain = state.penalty(dev[ca] + xa[:, None, :] * inv_t[ca]) - pen[ca]
        balance = src_gain[:, None] + dst_gain
        total = balance + beta * (dist[act] - own[:, None])
        if cur is not None and dw > 0:
            cura = cur[act]
            leave = dw * state.size[act] * (la == cura)
            back = dw * state.size[act, None] * (ca == cura[:, None])
            total += leave[:, None] - back
        # Only moves that help balance: distance and disruption price them, they never motivate one.
        total[(ca == la[:, None]) | (balance >= -1e-12)] = np.inf
        best_a = np.argmin(total, axis=1)
        best_total_a = total[np.arange(len(act)), best_a]
        keep = best_total_a < -1e-12
        if not keep.any():
            break
        order = act[keep]
        best = np.zeros(prep.n, dtype=np.int64)
        best[order] = best_a[keep]
        best_total = np.zeros(prep.n)
        best_total[order] = best_total_a[keep]
        own_full = np.zeros(prep.n)
        own_full[order] = own[keep]
        own = own_full
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


def _fits(
    loads: list[list[float]], inv: list[list[float]], limit: list[float], a: int, b: int, delta: list[float]
) -> bool:
    """Does moving `delta` from a to b leave both within `limit`, or at least no worse than now?"""
    la, lb, ia, ib = loads[a], loads[b], inv[a], inv[b]
    for j_m in range(len(delta)):
        d0a, d0b = la[j_m] * ia[j_m] - 1.0, lb[j_m] * ib[j_m] - 1.0
        d1a, d1b = d0a - delta[j_m] * ia[j_m], d0b + delta[j_m] * ib[j_m]
        if abs(d1a) > max(limit[j_m], abs(d0a)) or abs(d1b) > max(limit[j_m], abs(d0b)):
            return False
    return True


def _shift(loads: list[list[float]], a: int, b: int, delta: list[float]) -> None:
    for j_m in range(len(delta)):
        loads[a][j_m] -= delta[j_m]
        loads[b][j_m] += delta[j_m]


def _polish(
    state: State, cand: np.ndarray, limit: np.ndarray, clock: Clock, rounds: int = POLISH_ROUNDS
) -> None:
    """Moves and swaps that shorten distances while every territory stays inside `limit`.

    The repair fixes balance with whatever move is cheapest now, which leaves ragged borders (an
    entity closer to its neighbour's centre than to its own). Capacitated k-means would swap those
    back: an entity of a that prefers b goes with one of b that prefers a, so loads barely change;
    a single move is taken when both territories have the slack. Centres follow the members between
    rounds, as the benchmark measures distance to the territory's centroid.
    """
    prep = state.prep
    xyz = state.xyz
    movable = prep.locked < 0
    limit_list = limit.tolist()
    m = prep.m
    inv_list = state.inv_list
    x_list = state.x_list
    for _round in range(rounds):
        labels = state.labels
        if state.movable_centres:
            state.centres = geometry.centroids(xyz, labels, prep.k, state.centres)
        centres = state.centres
        own = np.linalg.norm(xyz - centres[labels], axis=1)
        gain = np.linalg.norm(xyz[:, None, :] - centres[cand], axis=2) - own[:, None]
        gain[(cand == labels[:, None]) | ~movable[:, None]] = np.inf
        if prep.eligible is not None:
            gain[~prep.eligible[np.arange(prep.n)[:, None], cand]] = np.inf
        best = np.argmin(gain, axis=1)
        best_gain = gain[np.arange(prep.n), best]
        want = np.flatnonzero(best_gain < -1e-12)
        if len(want) == 0:
            break
        to = cand[want, best[want]]
        src = labels[want]
        # Per (from, to) pair, most-improving first; partners come from the reverse pair's list.
        order = np.lexsort((best_gain[want], to, src))
        want, to, src = want[order], to[order], src[order]
        key = (src * prep.k + to).tolist()
        lists: dict[int, list[int]] = {}
        for i, kk in zip(want.tolist(), key, strict=True):
            lists.setdefault(kk, []).append(i)
        loads = state.loads.tolist()

        applied = 0
        lab = labels
        for kk, mine in lists.items():
            a, b = divmod(kk, prep.k)
            theirs = lists.get(b * prep.k + a, [])
            q = 0
            for i in mine:
                if lab[i] != a:
                    continue
                xi = x_list[i]
                if _fits(loads, inv_list, limit_list, a, b, xi):
                    _shift(loads, a, b, xi)
                    lab[i] = b
                    applied += 1
                    continue
                while q < len(theirs):
                    j = theirs[q]
                    q += 1
                    if lab[j] != b:
                        continue
                    delta = [xi[t] - x_list[j][t] for t in range(m)]
                    if _fits(loads, inv_list, limit_list, a, b, delta):
                        _shift(loads, a, b, delta)
                        lab[i], lab[j] = b, a
                        applied += 2
                        break
        state.loads = np.asarray(loads, dtype=float)
        clock.tick(92, "shortening distances")
        if applied < max(1, prep.n // 2000) or clock.out_of_time():
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
    guard = StallGuard(STALL_ROUNDS, 1e-3)
    # A fixed budget of (a, b) pair evaluations rather than seconds keeps the answer deterministic.
    budget = EXCHANGE_BUDGET
    for _round in range(rounds):
        dev = state.deviation()
        excess = excess_by_territory(dev, prep)
        bad = np.flatnonzero(excess > 0)
        if len(bad) == 0:
            break
        # Tight tolerances on a few entities per territory can be infeasible: stop once the worst
        # territory has not improved for a while instead of cycling through the rounds.
        if guard.stalled_after(float(excess.sum())):
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
            centres = _place_new_territories(prep, xyz, cur, centres, empty)
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


def _place_new_territories(
    prep: Prepared, xyz: np.ndarray, cur: np.ndarray, centres: np.ndarray, empty: np.ndarray
) -> np.ndarray:
    """Centres for territories nobody belongs to yet (no anchor given): each is carved out of the most
    loaded territory, at the far centre of a two-way split of its entities.

    It used to start where the current centres were farthest away: on the 100k case that was a
    corner of Montana, whose nearest sixteen territories (all it took to fill it) spanned half the
    country. Inside a loaded territory its neighbours are close, so the change stays local.
    """
    centres = centres.copy()
    has = cur >= 0
    load = np.zeros((prep.k, prep.m))
    np.add.at(load, cur[has], prep.x[has])
    safe = np.where(prep.targets > 0, prep.targets, 1.0)
    rel = (load / safe * prep.w).mean(axis=1)
    rel[empty] = -np.inf
    for j in empty.tolist():
        src = int(np.argmax(rel))
        members = xyz[has & (cur == src)]
        if len(members) < 2:
            # Nothing to split: start where the current centres are farthest away.
            filled = np.flatnonzero(np.isfinite(rel))
            d, _ = cKDTree(centres[filled]).query(xyz)
            centres[j] = xyz[int(np.argmax(d))]
            rel[j] = 0.0
            continue
        keep = centres[src]
        new = members[int(np.argmax(np.linalg.norm(members - keep, axis=1)))]
        for _ in range(10):
            near_new = np.linalg.norm(members - new, axis=1) < np.linalg.norm(members - keep, axis=1)
            if not near_new.any() or near_new.all():
                break
            keep = geometry.normalize(members[~near_new].mean(axis=0)[None, :])[0]
            new = geometry.normalize(members[near_new].mean(axis=0)[None, :])[0]
        centres[j] = new
        rel[src] /= 2.0
        rel[j] = rel[src]
    return centres


def _transport_rebalance(
    state: State, points: np.ndarray, cand: np.ndarray, beta: float, dw: float, clock: Clock
) -> np.ndarray:
    """Plan and make the flows that bring every territory back within tolerance (see transport.py).

    Returns the candidates the later repair may use: when territories were added to a plan whose other
    territories are all within tolerance, only the new ones' neighbourhood may change, so every other
    entity is left with its own territory as its only candidate.
    """
    prep = state.prep
    if _within(state) or prep.current is None:
        return cand
    fresh = np.bincount(prep.current[prep.current >= 0], minlength=prep.k) == 0
    dev = state.deviation()
    # Aim inside the edge by two mean entities: the rounded plan is then within the tolerance on
    # small instances too, where one entity is a third of a point of a territory's target.
    share = prep.x.mean(axis=0) / np.maximum(prep.targets.mean(axis=0), 1e-300)
    tau = np.maximum(prep.tol * TRANSPORT_MARGIN - 2.0 * share, prep.tol * 0.8)
    moves = None
    allowed = None
    if fresh.any() and not fresh.all() and (np.abs(dev[~fresh]) <= prep.tol + 1e-9).all():
        # The others' targets shrank by the new share; the tolerance absorbs that where it can, and the
        # accounts far away keep their rep.
        old = np.flatnonzero(~fresh)
        d = np.linalg.norm(state.centres[fresh][:, None, :] - state.centres[old][None, :, :], axis=2)
        by_distance = old[np.argsort(d, axis=1, kind="stable")]
        # Each neighbour can give what lies between its load and the lower edge: fewer neighbours than
        # it takes to fill the new territory that way cannot work, so the search starts there.
        spare = np.maximum(dev + tau, 0.0) * prep.targets
        need = (1.0 - tau) * prep.targets[fresh]
        enough = np.cumsum(spare[by_distance], axis=1) >= need[:, None, :]
        filled = enough.all(axis=2)
        least = int(np.max(np.where(filled.any(axis=1), filled.argmax(axis=1) + 1, len(old))))
        for size in NEIGHBOURHOODS:
            if size >= len(old):
                break
            if size < least and size != NEIGHBOURHOODS[-1]:
                continue
            allowed = fresh.copy()
            allowed[by_distance[:, :size].ravel()] = True
            ent, dst, slack = transport.plan(state, cand, beta, dw, tau, clock, allowed)
            if slack <= 1e-9:
                moves = (ent, dst)
                break
        if moves is None:
            allowed = None
    if moves is not None:
        transport.apply(state, *moves)
    elif prep.n > TRANSPORT_MAX_ENTITIES:
        if prep.eligible is None:
            _coarse_transport(state, points, beta, dw, tau, clock)
        return cand
    # Rounding the LP's fractional entities can leave a territory a fraction of an entity over the
    # edge, and the repair will not pay a whole move's disruption for that: plan again from there, and
    # then round up, since the fractions left are what the tolerance still lacks.
    for step in range(TRANSPORT_ROUNDS if moves is None else TRANSPORT_ROUNDS - 1):
        if _within(state) or clock.out_of_time():
            break
        later = step > 0 or moves is not None
        again = transport.plan(state, cand, beta, dw, tau, clock, allowed, round_up=later)
        transport.apply(state, *again[:2], guard=tau if later else None)
    if allowed is None:
        return cand
    inside = allowed[state.labels]
    return np.where(inside[:, None] & allowed[cand], cand, state.labels[:, None])


def _morton(points: np.ndarray) -> np.ndarray:
    """Z-order codes of lon/lat quantised to 16 bits: sorting by them keeps neighbours together."""
    span = np.maximum(np.ptp(points, axis=0), 1e-12)
    q = ((points - points.min(axis=0)) / span * 65535).astype(np.uint64)

    def spread(v: np.ndarray) -> np.ndarray:
        v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
        v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
        v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
        return (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)

    return spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1))


def _coarse_transport(
    state: State, points: np.ndarray, beta: float, dw: float, tau: np.ndarray, clock: Clock
) -> None:
    """Plan the flows with the transport LP on cells of entities, then make them entity by entity.

    Cells never mix territories, new and existing entities, or locked and free ones, so a cell's
    move means the same for each of its members; their reason is the cell's.
    """
    prep = state.prep
    labels = state.labels
    fresh = prep.current < 0 if prep.current is not None else np.ones(prep.n, dtype=bool)
    locked = prep.locked >= 0
    group = (labels.astype(np.int64) * 2 + fresh) * 2 + locked
    order = np.lexsort((_morton(points), group))
    g_sorted = group[order]
    # A Morton curve jumps now and then (from one side of a quadrant to the other): a cell must not
    # span a jump, or moving it carries far accounts along (the 100k drift case lost compactness).
    xyz_sorted = state.xyz[order]
    gap = np.r_[np.inf, np.linalg.norm(np.diff(xyz_sorted, axis=0), axis=1)]
    spread = float(np.linalg.norm(state.xyz - state.centres[labels], axis=1).mean())
    new_run = np.r_[True, g_sorted[1:] != g_sorted[:-1]] | (gap > COARSE_JUMP * spread)
    starts = np.flatnonzero(new_run)
    rank = np.arange(prep.n) - np.repeat(starts, np.diff(np.r_[starts, prep.n]))
    run = np.cumsum(new_run) - 1
    _, cell_sorted = np.unique(run * (prep.n + 1) + rank // COARSE_CELL, return_inverse=True)
    cell = np.empty(prep.n, dtype=np.int64)
    cell[order] = cell_sorted
    e = int(cell_sorted.max()) + 1
    first = np.zeros(e, dtype=np.int64)
    first[cell[::-1]] = np.arange(prep.n)[::-1]
    x = np.zeros((e, prep.m))
    np.add.at(x, cell, prep.x)
    xyz = np.zeros((e, 3))
    np.add.at(xyz, cell, state.xyz)
    xyz /= np.maximum(np.linalg.norm(xyz, axis=1, keepdims=True), 1e-12)
    cell_labels = labels[first].copy()
    coarse = replace(
        prep,
        n=e,
        x=x,
        locked=np.where(locked[first], cell_labels, -1),
        current=np.where(fresh[first], -1, cell_labels),
        eligible=None,
        adjacency=None,
    )
    cstate = State(coarse, xyz, state.centres, cell_labels, float(state.tau[0] / max(prep.tol[0], 1e-12)))
    ccand = _candidates(coarse, xyz, state.centres, nearest=min(COARSE_CANDIDATES, prep.k - 1))
    for step in range(TRANSPORT_ROUNDS):
        if _within(cstate) or clock.out_of_time():
            break
        ent, dst, _slack = transport.plan(cstate, ccand, beta, dw, tau, clock, round_up=step > 0)
        transport.apply(cstate, ent, dst, guard=tau if step > 0 else None)
    moved = np.flatnonzero(cstate.labels[cell] != labels)
    for i in moved.tolist():
        c = int(cell[i])
        state.move(i, int(cstate.labels[c]))
        if c in cstate.reasons:
            state.reasons[i] = cstate.reasons[c]
    _return_unneeded(state, moved, tau)


def _return_unneeded(state: State, moved: np.ndarray, tau: np.ndarray) -> None:
    """Send moved entities back to their current territory, largest first, wherever both ends stay
    within ±tau: a whole cell carries more than the flow needs, and every return is disruption saved."""
    prep = state.prep
    if prep.current is None or not len(moved):
        return
    cur = prep.current
    back = moved[(cur[moved] >= 0) & (prep.locked[moved] < 0)]
    back = back[np.argsort(-state.size[back], kind="stable")]
    x, inv_t = prep.x, state.inv_t
    loads = state.loads
    for i in back.tolist():
        a, b = int(state.labels[i]), int(cur[i])
        if a == b:
            continue
        after_a = (loads[a] - x[i]) * inv_t[a] - 1.0
        after_b = (loads[b] + x[i]) * inv_t[b] - 1.0
        if (np.abs(after_a) <= tau).all() and (np.abs(after_b) <= tau).all():
            state.move(i, b)
            state.reasons.pop(i, None)


def _exact_assignment(state: State, movable_centres: bool, clock: Clock) -> None:
    """Replace the assignment by the optimal one for the current centres: minimum total distance with
    every territory within tolerance, locks and eligibility kept. Centres then follow their members
    and it is solved again, a few rounds, while that shortens the total distance."""

    prep = state.prep
    n, k, m = prep.n, prep.k, prep.m
    upper_bound = np.ones((n, k))
    if prep.eligible is not None:
        upper_bound[~prep.eligible] = 0.0
    lower_bound = np.zeros((n, k))
    locked = np.flatnonzero(prep.locked >= 0)
    lower_bound[locked, prep.locked[locked]] = 1.0
    upper_bound[locked] = 0.0
    upper_bound[locked, prep.locked[locked]] = 1.0
    # Columns: y[i, j] at i * k + j. Rows: one per entity, then one per (territory, metric) with a target.
    rows = [np.repeat(np.arange(n), k)]
    cols = [np.arange(n * k)]
    vals = [np.ones(n * k)]
    has_target = prep.targets > 0
    row_of = np.full((k, m), -1)
    row_of[has_target] = n + np.arange(int(has_target.sum()))
    for j in range(k):
        for q in range(m):
            if row_of[j, q] >= 0:
                rows.append(np.full(n, row_of[j, q]))
                cols.append(np.arange(n) * k + j)
                vals.append(prep.x[:, q])
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n + int(has_target.sum()), n * k),
    )
    lower = np.r_[np.ones(n), (prep.targets * (1 - prep.tol))[has_target]]
    upper = np.r_[np.ones(n), (prep.targets * (1 + prep.tol))[has_target]]
    best = float(np.linalg.norm(state.xyz - state.centres[state.labels], axis=1).sum())
    stop = min(clock.deadline, time.perf_counter() + EXACT_SECONDS)
    for _round in range(EXACT_ROUNDS):
        left = stop - time.perf_counter()
        if left <= 0.2:
            break
        dist = np.linalg.norm(state.xyz[:, None, :] - state.centres[None, :, :], axis=2)
        result = milp(
            dist.ravel(),
            constraints=LinearConstraint(matrix, lower, upper),
            integrality=np.ones(n * k),
            bounds=Bounds(lower_bound.ravel(), upper_bound.ravel()),
            options={"time_limit": left, "mip_rel_gap": 1e-4},
        )
        if result.x is None or float(result.fun) >= best - 1e-12:
            break
        labels = result.x.reshape(n, k).argmax(axis=1)
        for i in np.flatnonzero(labels != state.labels).tolist():
            a, b = int(state.labels[i]), int(labels[i])
            state.move(i, b)
            state.reasons.setdefault(i, f"{prep.territory_names[b]} is closer than {prep.territory_names[a]}")
        best = float(result.fun)
        if not movable_centres:
            break
        state.centres = geometry.centroids(state.xyz, state.labels, k, state.centres)
        best = float(np.linalg.norm(state.xyz - state.centres[state.labels], axis=1).sum())


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
        labels, centres = _price_phase(prep, xyz, centres, anchors_xyz is None, clock, iterations=40)
        if anchors_xyz is None:
            centres = geometry.centroids(xyz, labels, prep.k, centres)
        # Distance weighs more than it used to: on city-clustered accounts the cheapest balance moves
        # otherwise strip far fringes off territories and cost ~0.05 of compactness.
        margin, beta = DESIGN_MARGIN, 0.5
    state = State(prep, xyz, centres, labels.copy(), margin)
    if prep.adjacency is not None:
        make_contiguous(state, clock)
        repair_contiguous(state, beta, problem.disruption_weight, clock)
        if not _within(state) and not clock.out_of_time():
            exchange_contiguous(
                state, beta * (LATE_BETA if not rebalancing else 1.0), problem.disruption_weight, clock
            )
        if not _within(state) and not rebalancing and not clock.out_of_time():
            chain_contiguous(state, beta * LATE_BETA, clock)
    else:
        cand = _candidates(prep, xyz, centres, nearest=CANDIDATES if rebalancing else DESIGN_CANDIDATES)
        if rebalancing:
            cand = _transport_rebalance(
                state, np.asarray(problem.points, dtype=float), cand, beta, problem.disruption_weight, clock
            )
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
        if not rebalancing and not clock.out_of_time():
            # Within the tolerance, or no worse than the repair left it: polishing never costs balance.
            state.movable_centres = anchors_xyz is None
            _polish(state, _candidates(prep, xyz, state.centres), prep.tol * POLISH_LIMIT, clock)
        if not rebalancing and prep.n * prep.k <= EXACT_MAX_VARIABLES and not clock.out_of_time():
            _exact_assignment(state, anchors_xyz is None, clock)
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

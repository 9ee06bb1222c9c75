"""Rebalancing by transport: one LP over boundary accounts instead of many greedy local moves.

Regional drift puts whole regions over target, so load has to flow across several territories.
Greedy moves only see one border at a time; they strip the over-target territory's cheapest
accounts towards whichever neighbour is under, and the chain behind it never forms. Here every
movable entity may go to one of its nearest other territories (fractionally, 0..1); each territory
must end within the tolerance on every metric; the cost of a move is its disruption plus the detour.
Because only border entities are offered, the LP's flows are the territory-to-territory flows over
the adjacency graph and their realisation at once: which accounts cross each border is chosen by the
same objective that sizes the flow. New accounts cost no disruption, so the LP also decides which
of their candidate territories absorbs them; that is most of the gain over greedy moves (1.09× the LP
bound of moved revenue instead of 1.52× on the 4k drift test). A basic optimum has at most one
fractional entity per binding row (2 K M), so rounding leaves little for the repair to finish.
The solver uses it unrestricted only up to TRANSPORT_MAX_ENTITIES (see solver.py).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import LinearConstraint, milp

from .state import Clock, State, reason

# Per (from, to) pair, the existing entities with the smallest detour. Every candidate territory is
# offered, not just the nearest two or three: on a 16-territory band, three left the LP infeasible and
# four moved 1.5× the accounts eight did, since a corner entity can then skip a neighbour that is full.
POOL_SHARE = 0.5
# Every move costs as much as this detour (in mean entity-to-centre distances) on top of its own.
MOVE_COST = 0.5
# Slack is charged far above any real move, so the LP only leaves a territory out of tolerance when
# no movable entity can bring it in (locks, eligibility, a neighbourhood too small).
SLACK_COST = 1e3


def plan(
    state: State,
    cand: np.ndarray,
    beta: float,
    dw: float,
    tau: np.ndarray,
    clock: Clock,
    allowed: np.ndarray | None = None,
    round_up: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(entities, destinations, slack): the rounded moves that bring every territory within ±tau.

    allowed: (K,) bool, the only territories that may lose or gain entities; None = all. slack is
    the LP's total relative deviation it could not remove (0 = every territory reaches ±tau).
    round_up: also move the entities the LP moves only in part (for the last fractions of a point).
    """
    prep = state.prep
    xyz, centres, labels = state.xyz, state.centres, state.labels
    n, k = prep.n, prep.k
    movable = prep.locked < 0
    if allowed is not None:
        movable &= allowed[labels]
    own = np.linalg.norm(xyz - centres[labels], axis=1)
    scale = max(float(own.mean()), 1e-12)
    # Existing entities are offered across a border only (the pools below); new ones move for free, so
    # every candidate territory may take them.
    width = cand.shape[1]
    fresh = np.ones(n, dtype=bool) if prep.current is None else prep.current < 0
    ent = np.repeat(np.arange(n), width)
    dst = cand.ravel()
    ok = movable[ent] & (dst != labels[ent])
    if allowed is not None:
        ok &= allowed[dst]
    if prep.eligible is not None:
        ok &= prep.eligible[ent, dst]
    ent, dst = ent[ok], dst[ok]
    # Reverse candidates and the eligibility fallback can repeat a territory.
    _, first = np.unique(ent * k + dst, return_index=True)
    ent, dst = ent[first], dst[first]
    detour = (np.linalg.norm(xyz[ent] - centres[dst], axis=1) - own[ent]) / scale
    src = labels[ent]
    pair = src * k + dst
    order = np.lexsort((detour, pair))
    sorted_pair = pair[order]
    starts = np.flatnonzero(np.r_[True, sorted_pair[1:] != sorted_pair[:-1]])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    pool = max(20, int(np.ceil(POOL_SHARE * n / k)))
    keep = (rank < pool) | fresh[ent]
    ent, dst, src, detour = ent[keep], dst[keep], src[keep], detour[keep]
    v = len(ent)

    # Rows: one per (territory, metric) with a target; the relative load change must land in
    # [-tau - dev, tau - dev]. Columns: the moves, then one pair of slacks per row.
    dev = state.deviation()
    inv_t = state.inv_t
    rows_tm = np.flatnonzero((inv_t > 0).ravel())
    row_of = np.full(k * prep.m, -1)
    row_of[rows_tm] = np.arange(len(rows_tm))
    r_rows, r_cols, r_vals = [], [], []
    for j_m in range(prep.m):
        gain = prep.x[ent, j_m]
        for terr, sign in ((dst, 1.0), (src, -1.0)):
            r = row_of[terr * prep.m + j_m]
            use = r >= 0
            r_rows.append(r[use])
            r_cols.append(np.flatnonzero(use))
            r_vals.append(sign * gain[use] * inv_t[terr[use], j_m])
    n_rows = len(rows_tm)
    slack_cols = v + np.arange(2 * n_rows)
    r_rows += [np.arange(n_rows), np.arange(n_rows)]
    r_cols += [slack_cols[:n_rows], slack_cols[n_rows:]]
    r_vals += [np.ones(n_rows), -np.ones(n_rows)]
    # An entity offered to two territories may still move only once.
    multi = np.flatnonzero(np.bincount(ent, minlength=n) > 1)
    ent_row = np.full(n, -1)
    ent_row[multi] = n_rows + np.arange(len(multi))
    use = ent_row[ent] >= 0
    r_rows.append(ent_row[ent[use]])
    r_cols.append(np.flatnonzero(use))
    r_vals.append(np.ones(int(use.sum())))
    total_rows = n_rows + len(multi)
    matrix = sp.csr_matrix(
        (np.concatenate(r_vals), (np.concatenate(r_rows), np.concatenate(r_cols))),
        shape=(total_rows, v + 2 * n_rows),
    )
    flat_dev = dev.ravel()[rows_tm]
    flat_tau = np.tile(tau, k)[rows_tm]
    lower = np.r_[-flat_tau - flat_dev, np.full(len(multi), -np.inf)]
    upper = np.r_[flat_tau - flat_dev, np.ones(len(multi))]

    cur = prep.current
    cost = beta * np.maximum(detour, 0.0)
    if cur is not None and dw > 0:
        cost += dw * state.size[ent] * ((cur[ent] == src).astype(float) - (cur[ent] == dst))
    # A move must be paid for by balance: a free (or profitable) detour would redraw the map, and
    # without disruption weight the flow would otherwise spread over long chains of free moves.
    cost = np.maximum(cost, 0.0) + beta * MOVE_COST
    slack_price = SLACK_COST * max(1.0, dw) * n / k
    c = np.r_[cost, np.full(2 * n_rows, slack_price)]
    clock.tick(40, "planning flows between territories")
    result = milp(
        c,
        constraints=LinearConstraint(matrix, lower, upper),
        bounds=(0.0, np.r_[np.ones(v), np.full(2 * n_rows, np.inf)]),
        options={"time_limit": max(1.0, clock.deadline - time.perf_counter())},
    )
    if result.x is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.inf
    z = result.x
    chosen = np.flatnonzero(z[:v] > (1e-6 if round_up else 0.5))
    chosen = chosen[np.argsort(-z[chosen], kind="stable")]
    return ent[chosen], dst[chosen], float(z[v:].sum())


def apply(state: State, ent: np.ndarray, dst: np.ndarray, guard: np.ndarray | None = None) -> None:
    """Make the planned moves, each with the reason its source or destination gave before any.

    guard: (M,) tolerance; when given, a move is made only if it shrinks the two territories' excess
    beyond it, so rounded-up fractions never push a territory further out.
    """
    dev = state.deviation()
    x, inv_t, w = state.prep.x, state.inv_t, state.prep.w
    over = np.asarray((dev - state.tau > 0).any(axis=1), dtype=bool)
    under = np.asarray((-dev - state.tau > 0).any(axis=1), dtype=bool)
    names, tnames = state.prep.names, state.prep.territory_names
    for i, b in zip(ent.tolist(), dst.tolist(), strict=True):
        a = int(state.labels[i])
        if guard is not None:
            now = state.deviation()[[a, b]]
            after = now + np.stack((-x[i] * inv_t[a], x[i] * inv_t[b]))
            before_excess = (np.maximum(np.abs(now) - guard, 0.0) ** 2 * w).sum()
            if (np.maximum(np.abs(after) - guard, 0.0) ** 2 * w).sum() >= before_excess - 1e-15:
                continue
        if over[a] or under[b]:
            state.reasons[i] = reason(state, a, b, dev[a], dev[b])
        else:
            # Neither end needs it for itself: the move is a link of a chain carrying a region's excess.
            j_m = int(np.argmax(state.rel[i] * state.prep.w))
            state.reasons[i] = f"{tnames[a]} passed {names[j_m]} on to {tnames[b]} for over-target neighbours"
        state.move(i, b)

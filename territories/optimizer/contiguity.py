"""Contiguous territories on an adjacency graph: repair fragments, then move boundary units only.

A unit moves only to a territory it touches, and only when its old territory stays connected without
it; that check is a breadth-first search inside the old territory that stops as soon as the unit's
neighbours there are reached from one another, so it costs a few dozen steps on ZIP-sized units.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy.sparse.csgraph import connected_components

from .state import Clock, StallGuard, State, excess_by_territory, reason

EDGE = 0.98


def _neighbours(state: State) -> list[list[int]]:
    adj = state.prep.adjacency
    assert adj is not None
    indptr, indices = adj.indptr, adj.indices
    return [indices[indptr[i] : indptr[i + 1]].tolist() for i in range(state.prep.n)]


def make_contiguous(state: State, clock: Clock, passes: int = 30) -> None:
    """Hand every fragment but a territory's main one to the neighbouring territory it touches most."""
    prep = state.prep
    adj = prep.adjacency
    assert adj is not None
    nbrs = _neighbours(state)
    locked = prep.locked
    for _ in range(passes):
        changed = False
        labels = state.labels
        for j in range(prep.k):
            members = np.flatnonzero(labels == j)
            if len(members) <= 1:
                continue
            count, comp = connected_components(adj[members][:, members], directed=False)
            if count == 1:
                continue
            # Keep the fragment holding locked units, else the heaviest one.
            weight = np.bincount(comp, weights=state.size[members] + 1e-9, minlength=count).astype(float)
            weight += 1e6 * np.bincount(comp, weights=(locked[members] >= 0).astype(float), minlength=count)
            keep = int(np.argmax(weight))
            for c in range(count):
                if c == keep:
                    continue
                frag = members[comp == c]
                frag_set = set(frag.tolist())
                touch: dict[int, int] = {}
                for u in frag.tolist():
                    for v in nbrs[u]:
                        if v not in frag_set and labels[v] != j:
                            b = int(labels[v])
                            if prep.eligible is None or prep.eligible[frag, b].all():
                                touch[b] = touch.get(b, 0) + 1
                if not touch:
                    continue
                b = max(sorted(touch), key=lambda t: touch[t])
                for u in frag.tolist():
                    if locked[u] < 0:
                        state.move(u, b)
                changed = True
        clock.tick(55, "making territories contiguous")
        if not changed:
            break


def _stays_connected(u: int, a: int, nbrs: list[list[int]], lab: list[int]) -> bool:
    """Does territory a stay connected when unit u leaves it?"""
    inside = [v for v in nbrs[u] if lab[v] == a]
    if len(inside) <= 1:
        return True
    goal = set(inside)
    seen = {u, inside[0]}
    goal.discard(inside[0])
    queue = deque([inside[0]])
    while queue:
        v = queue.popleft()
        for z in nbrs[v]:
            if z not in seen and lab[z] == a:
                seen.add(z)
                goal.discard(z)
                if not goal:
                    return True
                queue.append(z)
    return False


def repair_contiguous(state: State, beta: float, dw: float, clock: Clock, rounds: int = 200) -> None:
    """Greedy balance moves of boundary units that keep every territory connected."""
    prep = state.prep
    adj = prep.adjacency
    assert adj is not None
    nbrs = _neighbours(state)
    coo = adj.tocoo()
    src_all, dst_all = coo.row.astype(np.int64), coo.col.astype(np.int64)
    x, inv_t = prep.x, state.inv_t
    cur = prep.current
    scale = max(float(np.linalg.norm(state.xyz - state.centres[state.labels], axis=1).mean()), 1e-12)
    counts = np.bincount(state.labels, minlength=prep.k)
    for r in range(rounds):
        dev = state.deviation()
        pen = state.penalty(dev)
        if not (pen > 0).any():
            break
        labels = state.labels
        cross = labels[src_all] != labels[dst_all]
        pairs = np.unique(np.column_stack((src_all[cross], labels[dst_all[cross]])), axis=0)
        if len(pairs) == 0:
            break
        u, b = pairs[:, 0], pairs[:, 1]
        ok = prep.locked[u] < 0
        if prep.eligible is not None:
            ok &= prep.eligible[u, b]
        u, b = u[ok], b[ok]
        a = labels[u]
        own = np.linalg.norm(state.xyz[u] - state.centres[a], axis=1) / scale
        far = np.linalg.norm(state.xyz[u] - state.centres[b], axis=1) / scale
        balance = (
            state.penalty(dev[a] - x[u] * inv_t[a])
            - pen[a]
            + state.penalty(dev[b] + x[u] * inv_t[b])
            - pen[b]
        )
        gain = balance + beta * (far - own)
        if cur is not None and dw > 0:
            gain += dw * state.size[u] * ((cur[u] == a).astype(float) - (cur[u] == b))
        # Only moves that help balance: distance and disruption price them, they never motivate one.
        order = np.flatnonzero((gain < -1e-12) & (balance < -1e-12))
        if len(order) == 0:
            break
        order = order[np.argsort(gain[order], kind="stable")]
        lab = labels.tolist()
        loads = state.loads.tolist()
        size = state.size.tolist()
        cur_list = cur.tolist() if cur is not None else None
        applied = 0
        for idx in order.tolist():
            i, bi = int(u[idx]), int(b[idx])
            ai = lab[i]
            if ai == bi or counts[ai] <= 1 or not any(lab[v] == bi for v in nbrs[i]):
                continue
            exact_balance = state.scalar_gain(loads, i, ai, bi)
            exact = exact_balance + beta * float(far[idx] - own[idx])
            if cur_list is not None and dw > 0:
                exact += dw * size[i] * (float(cur_list[i] == ai) - float(cur_list[i] == bi))
            if exact_balance >= -1e-12 or exact >= -1e-12 or not _stays_connected(i, ai, nbrs, lab):
                continue
            d_a = np.asarray(loads[ai]) * inv_t[ai] - 1.0
            d_b = np.asarray(loads[bi]) * inv_t[bi] - 1.0
            state.reasons[i] = reason(state, ai, bi, d_a, d_b)
            state.move_lists(loads, i, bi)
            lab[i] = bi
            counts[ai] -= 1
            counts[bi] += 1
            applied += 1
        state.loads = np.asarray(loads, dtype=float)
        clock.tick(60 + int(35 * r / rounds), "repairing balance on contiguous territories")
        if applied == 0 or clock.out_of_time():
            break


def _connected(members: list[int], nbrs: list[list[int]], lab: list[int], j: int) -> bool:
    """Is territory j (whose units are `members`, labels per `lab`) one connected piece?"""
    if not members:
        return False
    seen = {members[0]}
    queue = deque([members[0]])
    while queue:
        v = queue.popleft()
        for z in nbrs[v]:
            if z not in seen and lab[z] == j:
                seen.add(z)
                queue.append(z)
    return len(seen) == len(members)


def exchange_contiguous(
    state: State, beta: float, dw: float, clock: Clock, rounds: int = 60, pool: int = 40, tries: int = 12
) -> None:
    """Swap a boundary unit of an out-of-tolerance territory for one of a neighbour's, or move one.

    Lumpy units stall single moves: the unit that would fix a territory overshoots its neighbour. A
    swap moves only the difference of two units. Both territories are re-checked for connectivity
    after the tentative swap (a breadth-first search over a few dozen units), best candidates first.
    """
    prep = state.prep
    nbrs = _neighbours(state)
    x, inv_t, xyz = prep.x, state.inv_t, state.xyz
    movable = prep.locked < 0
    cur = prep.current
    scale = max(float(np.linalg.norm(xyz - state.centres[state.labels], axis=1).mean()), 1e-12)
    zero = np.zeros((1, prep.m))
    guard = StallGuard(3, 1e-3)
    # Measured against the tolerance itself, not the repair's inner target: a neighbour may fill up
    # to the edge to take what the out-of-tolerance territory sheds.
    edge = prep.tol * EDGE

    def outer(d: np.ndarray) -> np.ndarray:
        e = np.maximum(np.abs(d) - edge, 0.0)
        return state.c_bal * (e * e * prep.w).sum(axis=-1)

    for _round in range(rounds):
        dev = state.deviation()
        excess = excess_by_territory(dev, prep)
        bad = np.flatnonzero(excess > 0)
        if len(bad) == 0:
            break
        if guard.stalled_after(float(excess.sum())):
            break
        applied = 0
        for a in bad[np.argsort(-excess[bad], kind="stable")].tolist():
            lab = state.labels.tolist()
            members_a = np.flatnonzero(state.labels == a).tolist()
            out_a: dict[int, set[int]] = {}
            into_a: dict[int, set[int]] = {}
            for u in members_a:
                for v in nbrs[u]:
                    b = lab[v]
                    if b != a:
                        out_a.setdefault(b, set()).add(u)
                        into_a.setdefault(b, set()).add(v)
            dev = state.deviation()
            pen_now = outer(dev)
            options: list[tuple[float, int, int, int]] = []
            for b in sorted(out_a):
                ua = np.asarray(sorted(out_a[b]), dtype=np.int64)
                ub = np.asarray(sorted(into_a[b]), dtype=np.int64)
                ua = ua[movable[ua]]
                ub = ub[movable[ub]]
                if prep.eligible is not None:
                    ua = ua[prep.eligible[ua, b]]
                    ub = ub[prep.eligible[ub, a]]
                ca = (
                    np.linalg.norm(xyz[ua] - state.centres[b], axis=1)
                    - np.linalg.norm(xyz[ua] - state.centres[a], axis=1)
                ) / scale
                cb = (
                    np.linalg.norm(xyz[ub] - state.centres[a], axis=1)
                    - np.linalg.norm(xyz[ub] - state.centres[b], axis=1)
                ) / scale
                keep_a, keep_b = np.argsort(ca, kind="stable")[:pool], np.argsort(cb, kind="stable")[:pool]
                ua, ca, ub, cb = ua[keep_a], ca[keep_a], ub[keep_b], cb[keep_b]
                if cur is not None and dw > 0:
                    ca = ca + dw / beta * state.size[ua] * ((cur[ua] == a).astype(float) - (cur[ua] == b))
                    cb = cb + dw / beta * state.size[ub] * ((cur[ub] == b).astype(float) - (cur[ub] == a))
                delta = np.vstack((zero, x[ua]))[:, None, :] - np.vstack((zero, x[ub]))[None, :, :]
                balance = (
                    outer(dev[a] - delta * inv_t[a])
                    + outer(dev[b] + delta * inv_t[b])
                    - pen_now[a]
                    - pen_now[b]
                )
                total = balance + beta * (np.r_[0.0, ca][:, None] + np.r_[0.0, cb][None, :])
                total[balance >= -1e-12] = np.inf
                total[0, 0] = np.inf
                flat = np.argsort(total, axis=None, kind="stable")[:tries]
                for f in flat.tolist():
                    value = float(total.flat[f])
                    if not np.isfinite(value) or value >= -1e-12:
                        break
                    p, q = divmod(f, total.shape[1])
                    options.append((value, b, int(ua[p - 1]) if p else -1, int(ub[q - 1]) if q else -1))
            options.sort()
            for _value, b, i, j in options[:tries]:
                if i >= 0:
                    lab[i] = b
                if j >= 0:
                    lab[j] = a
                new_a = [u for u in members_a if u != i] + ([j] if j >= 0 else [])
                new_b = np.flatnonzero(state.labels == b).tolist()
                new_b = [u for u in new_b if u != j] + ([i] if i >= 0 else [])
                if _connected(new_a, nbrs, lab, a) and _connected(new_b, nbrs, lab, b):
                    d_a, d_b = state.deviation()[a], state.deviation()[b]
                    if i >= 0:
                        state.reasons[i] = reason(state, a, b, d_a, d_b)
                        state.move(i, b)
                    if j >= 0:
                        state.reasons[j] = reason(state, b, a, d_b, d_a)
                        state.move(j, a)
                    applied += 1
                    break
                if i >= 0:
                    lab[i] = a
                if j >= 0:
                    lab[j] = b
        clock.tick(95, "exchanging units between neighbours")
        if applied == 0 or clock.out_of_time():
            break


def chain_contiguous(state: State, beta: float, clock: Clock, rounds: int = 20, tries: int = 20) -> None:
    """Pass load along a chain a → b → c: a boundary unit of an out-of-tolerance territory a goes to a
    neighbour b, which hands one of its own boundary units on to its neighbour c.

    Left after the swaps: a territory whose neighbours are all near their own edge (a dense city
    ringed by full suburbs). One step further out there is room, and a chain reaches it while every
    territory stays connected.
    """
    prep = state.prep
    nbrs = _neighbours(state)
    x, inv_t, xyz = prep.x, state.inv_t, state.xyz
    movable = prep.locked < 0
    scale = max(float(np.linalg.norm(xyz - state.centres[state.labels], axis=1).mean()), 1e-12)
    edge = prep.tol * EDGE

    def outer(d: np.ndarray) -> np.ndarray:
        e = np.maximum(np.abs(d) - edge, 0.0)
        return state.c_bal * (e * e * prep.w).sum(axis=-1)

    def border(lab: list[int], members: list[int], a: int) -> dict[int, list[int]]:
        """Movable units of territory a by the neighbouring territory they touch."""
        out: dict[int, set[int]] = {}
        for u in members:
            if not movable[u]:
                continue
            for v in nbrs[u]:
                if lab[v] != a and (prep.eligible is None or prep.eligible[u, lab[v]]):
                    out.setdefault(lab[v], set()).add(u)
        return {b: sorted(units) for b, units in out.items()}

    for _round in range(rounds):
        dev = state.deviation()
        excess = excess_by_territory(dev, prep)
        bad = np.flatnonzero(excess > 0)
        if len(bad) == 0 or clock.out_of_time():
            break
        applied = 0
        for a in bad[np.argsort(-excess[bad], kind="stable")].tolist():
            lab = state.labels.tolist()
            dev = state.deviation()
            pen = outer(dev)
            members: dict[int, list[int]] = {j: [] for j in range(prep.k)}
            for u, j in enumerate(lab):
                members[j].append(u)
            options: list[tuple[float, int, int, int, int]] = []
            for b, ua in border(lab, members[a], a).items():
                ua_arr = np.asarray(ua, dtype=np.int64)
                for c, ub in border(lab, members[b], b).items():
                    if c == a:
                        continue
                    ub_arr = np.asarray(ub, dtype=np.int64)
                    xi = x[ua_arr][:, None, :]
                    xj = x[ub_arr][None, :, :]
                    total = (
                        outer(dev[a] - xi * inv_t[a])
                        + outer(dev[b] + (xi - xj) * inv_t[b])
                        + outer(dev[c] + xj * inv_t[c])
                        - pen[a]
                        - pen[b]
                        - pen[c]
                    )
                    detour = (
                        np.linalg.norm(xyz[ua_arr] - state.centres[b], axis=1)
                        - np.linalg.norm(xyz[ua_arr] - state.centres[a], axis=1)
                    )[:, None] + (
                        np.linalg.norm(xyz[ub_arr] - state.centres[c], axis=1)
                        - np.linalg.norm(xyz[ub_arr] - state.centres[b], axis=1)
                    )[None, :]
                    helps = total < -1e-12
                    total = np.where(helps, total + beta * detour / scale, np.inf)
                    for f in np.argsort(total, axis=None, kind="stable")[:tries].tolist():
                        value = float(total.flat[f])
                        if not np.isfinite(value) or value >= -1e-12:
                            break
                        p, q = divmod(f, total.shape[1])
                        if ua_arr[p] != ub_arr[q]:
                            options.append((value, b, c, int(ua_arr[p]), int(ub_arr[q])))
            options.sort()
            for _value, b, c, i, j in options[:tries]:
                lab[i], lab[j] = b, c
                new_a = [u for u in members[a] if u != i]
                new_b = [u for u in members[b] if u != j] + [i]
                new_c = [*members[c], j]
                if all(_connected(m, nbrs, lab, t) for m, t in ((new_a, a), (new_b, b), (new_c, c))):
                    d = state.deviation()
                    state.reasons[i] = reason(state, a, b, d[a], d[b])
                    state.move(i, b)
                    d = state.deviation()
                    handed = reason(state, b, c, d[b], d[c])
                    state.reasons[j] = f"passed on from {prep.territory_names[b]}: {handed}"
                    state.move(j, c)
                    applied += 1
                    break
                lab[i], lab[j] = a, b
        clock.tick(97, "passing load along chains of neighbours")
        if applied == 0:
            break

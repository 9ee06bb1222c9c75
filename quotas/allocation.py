"""Top-down quota allocation: a pure core on numpy arrays (no Django, no database).

All money is in integer cents (int64), so sums are exact. The steps:

1. Shares through the hierarchy. At every node, its amount is split among its children in proportion
   to a weight: the potential of their accounts, last fiscal year's bookings of the component
   ("history"), or a blend `w·potential share + (1 − w)·history share` (shares, not raw figures,
   because potential and bookings are on different scales). A sibling group with no history at all
   falls back to potential, and one with no weight at all splits equally. Optional caps bound every
   child between `min_ratio` and `max_ratio` times the average of its siblings (so 0.5 and 2.0 mean
   "no one gets less than half or more than twice the average"); the capped shares are the exact
   solution of Σ clip(λ·wᵢ, lo, hi) = 1, which keeps more weight from ever meaning a smaller share.
2. Rounding. Each leaf's exact amount is rounded to a multiple of `unit` with the largest-remainder
   (Hamilton) method against the company target, so the leaves add up to the target exactly; what is
   left below one unit (target mod unit) goes to the leaf with the largest amount. Every parent is
   then the sum of its children, so children always sum exactly to their parent.
3. Seasonality. Each leaf's year is spread over the months by the component's monthly shares of
   last year's company bookings (equal months when there is no history), again by largest remainder.
4. Rep splits. A territory's amount in every month is split among its reps by capacity × share, by
   largest remainder, so the reps of a territory add up to it exactly.

Rounding moves an amount by less than one unit from its exact value, so caps hold on the exact
amounts and within one unit per leaf after rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

METHODS = ("potential", "history", "blend")


class AllocationInputError(ValueError):
    """The inputs cannot give an allocation (shapes, negative figures, infeasible caps)."""


@dataclass(frozen=True)
class Caps:
    """Bounds on a child's amount as multiples of its sibling group's average; None = unbounded."""

    min_ratio: float | None = None
    max_ratio: float | None = None

    def check(self) -> None:
        if self.min_ratio is not None and not 0 <= self.min_ratio <= 1:
            raise AllocationInputError("min_ratio must be between 0 and 1 (1 = everyone gets the average).")
        if self.max_ratio is not None and self.max_ratio < 1:
            raise AllocationInputError("max_ratio must be at least 1 (1 = everyone gets the average).")

    @property
    def active(self) -> bool:
        return bool(self.min_ratio) or self.max_ratio is not None


@dataclass(frozen=True)
class AllocationInput:
    """One quota plan's figures, nodes and reps by position.

    parent:   (n,) index of each node's parent, -1 for the top level (children of the company).
    potential:(n,) potential of each leaf's accounts (values on non-leaves are ignored).
    history:  (n, c) last year's bookings per leaf and component (non-leaves ignored).
    seasonality_history: (c, m) last year's company bookings per component and month of the year.
    targets:  (c,) company target per component, in cents.
    rep_node: (r,) node of each rep membership; rep_weight: (r,) capacity × share (> 0).
    """

    parent: IntArray
    potential: FloatArray
    history: FloatArray
    seasonality_history: FloatArray
    targets: IntArray
    rep_node: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rep_weight: FloatArray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))


@dataclass(frozen=True)
class AllocationResult:
    """node_month (n, c, m), rep_month (r, c, m) and company_month (c, m), in cents; shares (n, c) are
    the exact fractions of the company target each node was given before rounding."""

    node_month: IntArray
    rep_month: IntArray
    company_month: IntArray
    shares: FloatArray

    @property
    def node_year(self) -> IntArray:
        return self.node_month.sum(axis=2)

    @property
    def rep_year(self) -> IntArray:
        return self.rep_month.sum(axis=2)


# --- rounding -------------------------------------------------------------------------------------


def largest_remainder(total: int, weights: FloatArray, unit: int = 1) -> IntArray:
    """Split `total` (cents) in proportion to `weights` into multiples of `unit` that sum to `total`
    exactly. Units go first to the largest floors, then one each to the largest remainders (ties to
    the lower index); `total mod unit` goes to the largest weight. Zero weights everywhere = equal."""
    return largest_remainder_rows(
        np.array([total], dtype=np.int64), np.asarray(weights, dtype=np.float64)[None, :], unit
    )[0]


def largest_remainder_rows(
    totals: IntArray, weights: FloatArray, unit: int = 1, mask: NDArray[np.bool_] | None = None
) -> IntArray:
    """`largest_remainder` for many groups at once: totals (g,), weights (g, k); `mask` (g, k) says
    which columns exist in each row (padding gets nothing)."""
    totals = np.asarray(totals, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if unit < 1:
        raise AllocationInputError("The rounding unit must be at least one cent.")
    if (totals < 0).any():
        raise AllocationInputError("Totals cannot be negative.")
    if weights.ndim != 2 or weights.shape[0] != totals.shape[0]:
        raise AllocationInputError("weights must be (groups, members) with one row per total.")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise AllocationInputError("Weights must be finite and non-negative.")
    g, k = weights.shape
    if mask is None:
        mask = np.ones((g, k), dtype=bool)
    if k == 0 or (~mask.any(axis=1) & (totals > 0)).any():
        raise AllocationInputError("A positive total needs at least one member to go to.")
    w = np.where(mask, weights, 0.0)
    empty = w.sum(axis=1) <= 0
    w[empty] = mask[empty].astype(np.float64)  # no weight at all: equal shares among members
    wsum = w.sum(axis=1)
    wsum[wsum == 0] = 1.0
    units, residue = np.divmod(totals, unit)
    ideal = units[:, None] * (w / wsum[:, None])
    base = np.floor(ideal).astype(np.int64)
    left = units - base.sum(axis=1)
    # Float error can leave `left` one off either way at extreme totals; pull it back into [0, k].
    while (left < 0).any():
        rows = np.flatnonzero(left < 0)
        cols = np.argmax(np.where(mask[rows], base[rows], -1), axis=1)
        base[rows, cols] -= 1
        left[rows] += 1
    remainder = np.where(mask, ideal - base, -np.inf)
    # Rank by remainder (largest first), ties to the lower column: a stable sort on the negation.
    order = np.argsort(-remainder, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(k)[None, :].repeat(g, axis=0), axis=1)
    members = mask.sum(axis=1)
    extra, left = np.divmod(left, np.maximum(members, 1))  # only when float error made left ≥ k
    base += np.where(mask, extra[:, None], 0)
    base += (rank < left[:, None]) & mask
    amounts = base * unit
    if residue.any():
        biggest = np.argmax(np.where(mask, w, -1.0), axis=1)
        amounts[np.arange(g), biggest] += residue
    return amounts


def distribute(delta: int, current: IntArray) -> IntArray:
    """Spread a change of `delta` cents over `current` amounts in proportion to them (equally when
    they are all zero), to the cent, so the result sums to `delta` exactly. A decrease never takes
    more from an amount than it holds (it is refused when it exceeds their sum)."""
    current = np.asarray(current, dtype=np.int64)
    if delta >= 0:
        return largest_remainder(int(delta), current.astype(np.float64))
    if -delta > int(current.sum()):
        raise AllocationInputError(f"Cannot take {-delta} cents from amounts that hold {int(current.sum())}.")
    # Proportional shares of a smaller total: each ≤ its amount, since ⌈x·a/T⌉ ≤ x when a ≤ T.
    return -largest_remainder(int(-delta), current.astype(np.float64))


# --- shares through the hierarchy ----------------------------------------------------------------


def capped_shares(weights: FloatArray, caps: Caps | None = None) -> FloatArray:
    """Shares (summing to 1) in proportion to `weights`, each between caps.min_ratio/n and
    caps.max_ratio/n: the λ with Σ clip(λ·wᵢ, lo, hi) = 1 (exact, piecewise linear in λ)."""
    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    if n == 0:
        return w
    total = w.sum()
    if total <= 0:
        w = np.ones(n)
        total = float(n)
    if caps is None or not caps.active:
        return w / total
    caps.check()
    lo = (caps.min_ratio or 0.0) / n
    hi = np.inf if caps.max_ratio is None else caps.max_ratio / n
    positive = w > 0
    if positive.sum() * hi + (~positive).sum() * lo < 1:
        # Zero-weight children stuck at the minimum would leave the group short of its amount under
        # the maximum: give them a sliver of weight so they take up what the others cannot.
        w = w + w[positive].mean() * 1e-9
        positive = w > 0
    breaks = np.concatenate([lo / w[positive], hi / w[positive]])
    breaks = np.unique(breaks[np.isfinite(breaks)])
    breaks = np.concatenate([[0.0], breaks])
    values = np.clip(breaks[:, None] * w[None, :], lo, hi).sum(axis=1)
    above = np.flatnonzero(values >= 1)
    if len(above) == 0:  # only possible with hi = inf, past the last break: linear from there
        lam_a, f_a = breaks[-1], values[-1]
        slope = w[np.clip(lam_a * w, lo, hi) == lam_a * w].sum() or w.sum()
        lam = lam_a + (1 - f_a) / slope
    else:
        j = above[0]
        if j == 0:
            lam = 0.0
        else:
            lam_a, lam_b, f_a, f_b = breaks[j - 1], breaks[j], values[j - 1], values[j]
            lam = lam_b if f_b == f_a else lam_a + (1 - f_a) * (lam_b - lam_a) / (f_b - f_a)
    shares = np.clip(lam * w, lo, hi)
    # Floating error leaves the sum a hair off 1; the rounding step absorbs it, but keep it tidy.
    return shares / shares.sum()


def _children(parent: IntArray) -> list[IntArray]:
    """Children of each node by position; the last entry holds the top-level nodes."""
    n = len(parent)
    keys = np.where(parent < 0, n, parent)
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n + 2))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n + 1)]


def topological_order(parent: IntArray) -> IntArray:
    """Nodes parents-first; refuses cycles and parents out of range."""
    parent = np.asarray(parent, dtype=np.int64)
    n = len(parent)
    if ((parent < -1) | (parent >= n)).any():
        raise AllocationInputError("A parent index is out of range.")
    children = _children(parent)
    order: list[int] = []
    frontier = list(children[n])
    while frontier:
        order.extend(frontier)
        frontier = [int(c) for p in frontier for c in children[p]]
    if len(order) != n:
        raise AllocationInputError("The hierarchy has a cycle (a node is its own ancestor).")
    return np.asarray(order, dtype=np.int64)


def subtree_sums(parent: IntArray, leaf_values: FloatArray | IntArray) -> NDArray:
    """Each node's sum of its leaves' values (values on non-leaves are replaced)."""
    parent = np.asarray(parent, dtype=np.int64)
    values = np.array(leaf_values, copy=True)
    order = topological_order(parent)
    is_leaf = np.ones(len(parent), dtype=bool)
    is_leaf[parent[parent >= 0]] = False
    values[~is_leaf] = 0
    for node in order[::-1]:
        p = parent[node]
        if p >= 0:
            values[p] += values[node]
    return values


def node_shares(
    parent: IntArray,
    potential: FloatArray,
    history: FloatArray,
    *,
    method: str,
    blend_weight: float = 0.5,
    caps: Caps | None = None,
) -> FloatArray:
    """(n, c) exact fraction of the company target each node gets, top-down."""
    if method not in METHODS:
        raise AllocationInputError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")
    if not 0 <= blend_weight <= 1:
        raise AllocationInputError("The blend weight (share of potential) must be between 0 and 1.")
    parent = np.asarray(parent, dtype=np.int64)
    n = len(parent)
    potential = np.asarray(potential, dtype=np.float64)
    history = np.asarray(history, dtype=np.float64)
    if potential.shape != (n,) or history.ndim != 2 or history.shape[0] != n:
        raise AllocationInputError("potential must be (n,) and history (n, components).")
    if (potential < 0).any() or (history < 0).any() or not np.isfinite(potential).all():
        raise AllocationInputError("Potential and history cannot be negative.")
    components = history.shape[1]
    pot = subtree_sums(parent, potential)
    hist = subtree_sums(parent, history)
    shares = np.zeros((n, components))
    order = topological_order(parent)
    children = _children(parent)
    groups = [children[n]] + [children[p] for p in order if len(children[p])]
    for kids in groups:
        p = parent[kids[0]]
        for c in range(components):
            base = 1.0 if p < 0 else shares[p, c]
            w_pot = pot[kids]
            w_hist = hist[kids, c]
            if method == "potential" or w_hist.sum() <= 0:
                weights = w_pot
            elif method == "history":
                weights = w_hist
            else:
                pot_share = w_pot / w_pot.sum() if w_pot.sum() > 0 else np.full(len(kids), 1 / len(kids))
                weights = blend_weight * pot_share + (1 - blend_weight) * w_hist / w_hist.sum()
            shares[kids, c] = base * capped_shares(weights, caps)
    return shares


def seasonality(monthly: FloatArray) -> FloatArray:
    """(c, m) shares of each month in the year per component; equal months without history."""
    monthly = np.asarray(monthly, dtype=np.float64)
    if (monthly < 0).any():
        raise AllocationInputError("Monthly history cannot be negative.")
    totals = monthly.sum(axis=1, keepdims=True)
    flat = np.full_like(monthly, 1.0 / max(monthly.shape[1], 1))
    return np.where(totals > 0, monthly / np.where(totals > 0, totals, 1.0), flat)


# --- the whole allocation ------------------------------------------------------------------------


def allocate(
    data: AllocationInput,
    *,
    method: str = "potential",
    blend_weight: float = 0.5,
    unit: int = 100,
    caps: Caps | None = None,
) -> AllocationResult:
    """Allocate the company targets down the hierarchy, over the months and to the reps."""
    parent = np.asarray(data.parent, dtype=np.int64)
    n = len(parent)
    targets = np.asarray(data.targets, dtype=np.int64)
    components = len(targets)
    season_history = np.asarray(data.seasonality_history, dtype=np.float64)
    if season_history.ndim != 2 or season_history.shape[0] != components or season_history.shape[1] < 1:
        raise AllocationInputError("seasonality_history must be (components, months).")
    if np.asarray(data.history).shape != (n, components):
        raise AllocationInputError("history must have one column per component target.")
    months = season_history.shape[1]
    if n == 0:
        raise AllocationInputError("The plan has no territories to allocate to.")
    shares = node_shares(
        parent, data.potential, data.history, method=method, blend_weight=blend_weight, caps=caps
    )
    is_leaf = np.ones(n, dtype=bool)
    is_leaf[parent[parent >= 0]] = False
    leaves = np.flatnonzero(is_leaf)
    node_year = np.zeros((n, components), dtype=np.int64)
    for c in range(components):
        node_year[leaves, c] = largest_remainder(int(targets[c]), shares[leaves, c], unit)
    season = seasonality(season_history)
    node_month = np.zeros((n, components, months), dtype=np.int64)
    for c in range(components):
        weights = np.broadcast_to(season[c], (len(leaves), months))
        node_month[leaves, c, :] = largest_remainder_rows(node_year[leaves, c], weights, unit)
    node_month = subtree_sums(parent, node_month)
    company_month = node_month[parent < 0].sum(axis=0)
    rep_month = split_among_reps(node_month, data.rep_node, data.rep_weight, unit)
    return AllocationResult(
        node_month=node_month, rep_month=rep_month, company_month=company_month, shares=shares
    )


def split_among_reps(node_month: IntArray, rep_node: IntArray, rep_weight: FloatArray, unit: int) -> IntArray:
    """(r, c, m): each node's amount per component and month split among its reps by weight."""
    rep_node = np.asarray(rep_node, dtype=np.int64)
    rep_weight = np.asarray(rep_weight, dtype=np.float64)
    n, components, months = node_month.shape
    r = len(rep_node)
    result = np.zeros((r, components, months), dtype=np.int64)
    if r == 0:
        return result
    if rep_weight.shape != (r,) or ((rep_node < 0) | (rep_node >= n)).any():
        raise AllocationInputError("Each rep needs a node in range and one weight.")
    order = np.argsort(rep_node, kind="stable")
    nodes, starts, counts = np.unique(rep_node[order], return_index=True, return_counts=True)
    k = int(counts.max())
    slot = np.arange(r) - np.repeat(starts, counts)  # position of each (sorted) rep within its node
    group = np.repeat(np.arange(len(nodes)), counts)
    weights = np.zeros((len(nodes), k))
    mask = np.zeros((len(nodes), k), dtype=bool)
    weights[group, slot] = rep_weight[order]
    mask[group, slot] = True
    # One row per (node, component), the node's reps as columns. Months go in order and each month
    # is split by what every rep is still owed of its share of the year so far (cumulative rounding),
    # so a rep's year stays within a unit of its share even when months are small next to the unit.
    share = weights / np.where(mask, weights, 0).sum(axis=1, keepdims=True)
    share = np.repeat(share, components, axis=0)
    row_mask = np.repeat(mask, components, axis=0)
    totals = node_month[nodes].reshape(len(nodes) * components, months)
    given = np.zeros(share.shape, dtype=np.int64)
    rows = np.zeros((*share.shape, months), dtype=np.int64)
    running = np.zeros(len(totals), dtype=np.int64)
    for m in range(months):
        running += totals[:, m]
        owed = np.where(row_mask, np.maximum(share * running[:, None] - given, 0.0), 0.0)
        rows[:, :, m] = largest_remainder_rows(totals[:, m], owed, unit, row_mask)
        given += rows[:, :, m]
    rows = rows.reshape(len(nodes), components, k, months).transpose(0, 1, 3, 2)
    result[order] = rows[group, :, :, slot]
    return result

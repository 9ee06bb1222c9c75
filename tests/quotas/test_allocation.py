"""Properties of the pure allocation core (no database)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from quotas import allocation
from quotas.allocation import AllocationInput, Caps, allocate, capped_shares, distribute, largest_remainder


@st.composite
def trees(draw, max_nodes: int = 25):
    """A random forest as parent indices (parents before children), with leaf figures and reps."""
    n = draw(st.integers(1, max_nodes))
    parent = [-1]
    for i in range(1, n):
        parent.append(draw(st.integers(-1, i - 1)))
    parent_arr = np.array(parent, dtype=np.int64)
    potential = np.array(draw(st.lists(st.integers(0, 10**7), min_size=n, max_size=n)), dtype=float)
    history = np.array(
        draw(st.lists(st.lists(st.integers(0, 10**6), min_size=3, max_size=3), min_size=n, max_size=n)),
        dtype=float,
    )
    season = np.array(
        draw(st.lists(st.lists(st.integers(0, 1000), min_size=12, max_size=12), min_size=3, max_size=3)),
        dtype=float,
    )
    targets = np.array(draw(st.lists(st.integers(0, 10**11), min_size=3, max_size=3)), dtype=np.int64)
    r = draw(st.integers(0, 2 * n))
    rep_node = np.array(draw(st.lists(st.integers(0, n - 1), min_size=r, max_size=r)), dtype=np.int64)
    rep_weight = np.array(draw(st.lists(st.floats(0.1, 2.0), min_size=r, max_size=r)), dtype=float)
    return AllocationInput(parent_arr, potential, history, season, targets, rep_node, rep_weight)


methods = st.sampled_from(allocation.METHODS)
units = st.sampled_from([1, 100, 1000, 100_000, 7])
caps = st.one_of(
    st.none(),
    st.builds(
        Caps,
        min_ratio=st.one_of(st.none(), st.floats(0, 1)),
        max_ratio=st.one_of(st.none(), st.floats(1, 5)),
    ),
)


def children_of(parent: np.ndarray) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, p in enumerate(parent):
        out.setdefault(int(p), []).append(i)
    return out


@settings(max_examples=150, deadline=None)
@given(data=trees(), method=methods, unit=units, cap=caps, blend=st.floats(0, 1))
def test_children_always_sum_exactly_to_their_parent(data, method, unit, cap, blend):
    result = allocate(data, method=method, blend_weight=blend, unit=unit, caps=cap)
    year = result.node_year
    assert (result.node_month >= 0).all() and (result.rep_month >= 0).all()
    # The top level adds up to the company target, to the cent, per component and month.
    np.testing.assert_array_equal(year[data.parent < 0].sum(axis=0), data.targets)
    np.testing.assert_array_equal(result.company_month.sum(axis=1), data.targets)
    for p, kids in children_of(data.parent).items():
        if p >= 0:
            np.testing.assert_array_equal(result.node_month[kids].sum(axis=0), result.node_month[p])
    for node in set(data.rep_node.tolist()):
        mine = data.rep_node == node
        np.testing.assert_array_equal(result.rep_month[mine].sum(axis=0), result.node_month[node])
    # Leaves are multiples of the unit but for the one that takes the remainder below a unit.
    leaves = np.setdiff1d(np.arange(len(data.parent)), data.parent[data.parent >= 0])
    off_unit = (year[leaves] % unit != 0).sum(axis=0)
    assert (off_unit <= 1).all()


@settings(max_examples=150, deadline=None)
@given(data=trees(), method=methods, unit=units, cap=caps)
def test_caps_are_respected(data, method, unit, cap):
    assume(cap is not None and cap.active)
    shares = allocation.node_shares(data.parent, data.potential, data.history, method=method, caps=cap)
    result = allocate(data, method=method, unit=unit, caps=cap)
    parent_share = np.where(data.parent[:, None] >= 0, shares[np.maximum(data.parent, 0)], 1.0)
    kids = children_of(data.parent)
    leaves = set(np.setdiff1d(np.arange(len(data.parent)), data.parent[data.parent >= 0]).tolist())
    for node, p in enumerate(data.parent):
        n = len(kids[int(p)])
        lo = (cap.min_ratio or 0) / n * parent_share[node]
        hi = np.inf if cap.max_ratio is None else cap.max_ratio / n * parent_share[node]
        # Exact shares lie within the caps ...
        assert np.all(shares[node] >= lo - 1e-9) and np.all(shares[node] <= hi + 1e-9)
        if node in leaves and p < 0:
            # ... and a top-level leaf's rounded amount within one unit (plus the sub-unit remainder).
            exact = shares[node] * data.targets
            assert np.all(np.abs(result.node_year[node] - exact) <= 2 * unit)


@settings(max_examples=200, deadline=None)
@given(data=trees(), unit=units, leaf_pick=st.integers(0, 10**6), extra=st.integers(1, 10**7))
def test_more_potential_never_means_less_quota(data, unit, leaf_pick, extra):
    leaves = np.setdiff1d(np.arange(len(data.parent)), data.parent[data.parent >= 0])
    leaf = int(leaves[leaf_pick % len(leaves)])
    before = allocate(data, method="potential", unit=unit)
    potential = data.potential.copy()
    potential[leaf] += extra
    richer = AllocationInput(
        data.parent,
        potential,
        data.history,
        data.seasonality_history,
        data.targets,
        data.rep_node,
        data.rep_weight,
    )
    after = allocate(richer, method="potential", unit=unit)
    assert np.all(after.node_year[leaf] >= before.node_year[leaf])


@given(
    total=st.integers(0, 10**12),
    weights=st.lists(st.floats(0, 1e6), min_size=1, max_size=40),
    unit=units,
)
def test_largest_remainder_is_exact_and_within_one_unit(total, weights, unit):
    w = np.array(weights)
    parts = largest_remainder(total, w, unit)
    assert parts.sum() == total and (parts >= 0).all()
    if w.sum() > 0:
        ideal = total * w / w.sum()
        assert np.all(np.abs(parts - ideal) <= 2 * unit)


@given(
    current=st.lists(st.integers(0, 10**9), min_size=1, max_size=20),
    fraction=st.floats(-1, 3),
)
def test_distribute_sums_and_never_takes_more_than_held(current, fraction):
    held = np.array(current, dtype=np.int64)
    delta = int(held.sum() * fraction) if fraction < 0 else int(10**6 * fraction)
    parts = distribute(delta, held)
    assert parts.sum() == delta
    assert np.all(held + parts >= 0)


def test_capped_shares_solves_the_clip_equation():
    shares = capped_shares(np.array([100.0, 1.0, 1.0, 1.0]), Caps(min_ratio=0.5, max_ratio=2.0))
    assert shares.sum() == pytest.approx(1)
    assert shares[0] == pytest.approx(0.5)  # two times the average of four
    assert shares[1:] == pytest.approx([1 / 6] * 3)


def test_history_method_falls_back_to_potential_without_history():
    data = AllocationInput(
        parent=np.array([-1, -1]),
        potential=np.array([3.0, 1.0]),
        history=np.zeros((2, 1)),
        seasonality_history=np.zeros((1, 12)),
        targets=np.array([4000]),
    )
    result = allocate(data, method="history", unit=1)
    assert result.node_year[:, 0].tolist() == [3000, 1000]
    # No history at all: equal months.
    assert set(result.node_month[0, 0].tolist()) == {250}


def test_bad_inputs_are_refused():
    with pytest.raises(allocation.AllocationInputError):
        allocation.topological_order(np.array([1, 0]))
    with pytest.raises(allocation.AllocationInputError):
        Caps(min_ratio=1.5).check()
    with pytest.raises(allocation.AllocationInputError):
        distribute(-11, np.array([5, 5]))


@settings(max_examples=150, deadline=None)
@given(data=trees(), cap=caps, leaf_pick=st.integers(0, 10**6), extra=st.integers(1, 10**7))
def test_more_potential_never_means_a_smaller_exact_share_even_with_caps(data, cap, leaf_pick, extra):
    leaves = np.setdiff1d(np.arange(len(data.parent)), data.parent[data.parent >= 0])
    leaf = int(leaves[leaf_pick % len(leaves)])
    before = allocation.node_shares(data.parent, data.potential, data.history, method="potential", caps=cap)
    potential = data.potential.copy()
    potential[leaf] += extra
    after = allocation.node_shares(data.parent, potential, data.history, method="potential", caps=cap)
    assert np.all(after[leaf] >= before[leaf] - 1e-12)

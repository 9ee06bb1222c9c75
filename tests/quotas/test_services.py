import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import Sum

from quotas import selectors, services
from quotas.choices import AdjustmentStatus, QuotaChangeKind, ReliefStatus
from quotas.models import FiscalPeriod, Quota, QuotaChange, QuotaRelief
from territories.services import account_assignments_move
from tessera_common.errors import ApplicationError

pytestmark = pytest.mark.django_db


def amount(quota_plan, *, period, territory=None, rep=None, component="new"):
    return Quota.objects.get(
        quota_plan=quota_plan, period=period, territory=territory, rep=rep, component=component
    ).amount


def assert_consistent(quota_plan):
    """Every parent (territory, quarter, year, company, territory with reps) is the sum of its parts."""
    rows = list(Quota.objects.filter(quota_plan=quota_plan).select_related("period", "territory"))
    by_key = {(q.period_id, q.territory_id, q.rep_id, q.component): q.amount for q in rows}
    territories = {q.territory_id: q.territory for q in rows if q.territory_id}
    for (period, territory, rep, component), value in by_key.items():
        if rep is not None:
            continue
        kids = [t for t in territories.values() if t.parent_id == territory]
        if kids:
            assert value == sum(by_key.get((period, k.pk, None, component), 0) for k in kids)
        reps = [
            k
            for k in by_key
            if k[0] == period and k[1] == territory and k[2] is not None and k[3] == component
        ]
        if territory is not None and reps:
            assert value == sum(by_key[k] for k in reps)
    for period in FiscalPeriod.objects.filter(parent=quota_plan.fiscal_year):
        for component in ("new", "renewal", "upsell"):
            for territory in [None, *territories]:
                months = sum(by_key.get((m.pk, territory, None, component), 0) for m in period.children.all())
                assert by_key.get((period.pk, territory, None, component), 0) == months


def test_allocation_by_potential_is_exact_and_consistent(world, allocated):
    year = allocated.fiscal_year
    assert amount(allocated, period=year) == Decimal("1200000.00")
    # Four equal leaves (same potential): 300,000 each, 75,000 per region... per leaf; 600,000 per region.
    assert amount(allocated, period=year, territory=world.west) == Decimal("600000.00")
    for code, leaf in world.leaves.items():
        assert amount(allocated, period=year, territory=leaf) == Decimal("300000.00")
        assert amount(allocated, period=year, territory=leaf, rep=world.reps[code]) == Decimal("300000.00")
    assert_consistent(allocated)
    # Seasonality from last year's bookings (March, June, December only).
    march = FiscalPeriod.objects.get(name="FY2026-M03")
    april = FiscalPeriod.objects.get(name="FY2026-M04")
    assert amount(allocated, period=april, territory=world.west) == 0
    assert amount(allocated, period=march, territory=world.west) == Decimal("200000.00")
    assert QuotaChange.objects.filter(quota_plan=allocated, kind=QuotaChangeKind.ALLOCATION).exists()


def test_allocation_by_history_and_blend(world, quota_plan):
    services.quota_plan_allocate(quota_plan=quota_plan, method="history", unit="1", actor=world.planner)
    year = quota_plan.fiscal_year
    assert amount(quota_plan, period=year, territory=world.west) == Decimal("800000.00")
    # Renewal has no history: it falls back to potential, half each.
    assert amount(quota_plan, period=year, territory=world.west, component="renewal") == Decimal("300000.00")
    services.quota_plan_allocate(
        quota_plan=quota_plan, method="blend", blend_weight=0.5, unit="1", actor=world.planner
    )
    assert amount(quota_plan, period=year, territory=world.west) == Decimal("700000.00")
    assert_consistent(quota_plan)


def test_allocation_refuses_bad_parameters(world, quota_plan):
    for kwargs, field in [
        ({"method": "magic"}, "method"),
        ({"blend_weight": 2}, "blend_weight"),
        ({"unit": "0"}, "unit"),
        ({"min_ratio": 1.5}, "min_ratio"),
        ({"max_ratio": 0.5}, "max_ratio"),
        ({"targets": {"new": "-5"}}, "targets.new"),
    ]:
        with pytest.raises(ApplicationError) as exc:
            services.quota_plan_allocate(quota_plan=quota_plan, actor=world.planner, **kwargs)
        assert field in exc.value.errors
    assert not Quota.objects.filter(quota_plan=quota_plan, territory__isnull=False).exists()


def test_caps_bound_each_child(world, quota_plan):
    leaf = world.leaves["W-T1"]
    for account in world.accounts["W-T1"]:
        account.potential = Decimal("500000")
        account.save()
    services.quota_plan_allocate(quota_plan=quota_plan, unit="1", max_ratio=1.2, actor=world.planner)
    year = quota_plan.fiscal_year
    # The West region would take almost everything; capped at 1.2 × the average of two regions.
    assert amount(quota_plan, period=year, territory=world.west) == Decimal("720000.00")
    assert amount(quota_plan, period=year, territory=leaf) == Decimal("432000.00")


def west_leaves(world):
    return world.leaves["W-T1"], world.leaves["W-T2"]


def test_adjustment_by_district_manager_needs_the_region_manager(world, allocated, hierarchy_managers):
    manager_district, second_rep = hierarchy_managers
    t1, t2 = west_leaves(world)
    q1 = FiscalPeriod.objects.get(name="FY2026-Q1")
    before_district = amount(allocated, period=allocated.fiscal_year, territory=t1.parent)
    adjustment = services.quota_adjustment_propose(
        quota_plan=allocated,
        actor=manager_district,
        component="new",
        period=q1,
        from_territory=t1,
        to_territory=t2,
        amount="10000",
        reason="T2 took over the Acme renewal team",
    )
    assert adjustment.approver_territory == world.west and adjustment.approver == world.manager_west
    # Nothing moved yet; the proposer, a planner and an outsider cannot decide it.
    assert amount(allocated, period=q1, territory=t1) == Decimal("100000.00")
    for user in (manager_district, world.planner, world.outsider):
        with pytest.raises(ApplicationError) as exc:
            services.quota_adjustment_approve(adjustment=adjustment, actor=user)
        assert exc.value.status == 403
    assert selectors.adjustments_awaiting(user=world.manager_west, quota_plan=allocated).get() == adjustment
    assert not selectors.adjustments_awaiting(user=world.planner, quota_plan=allocated).exists()

    services.quota_adjustment_approve(adjustment=adjustment, actor=world.manager_west, note="ok")
    adjustment.refresh_from_db()
    assert adjustment.status == AdjustmentStatus.APPROVED
    assert amount(allocated, period=q1, territory=t1) == Decimal("90000.00")
    assert amount(allocated, period=q1, territory=t2) == Decimal("110000.00")
    assert amount(allocated, period=allocated.fiscal_year, territory=t1.parent) == before_district
    # T1's two reps gave in proportion to what they held; T2's one rep took it all.
    reps_q1 = Quota.objects.filter(
        quota_plan=allocated, period=q1, territory=t1, rep__isnull=False, component="new"
    )
    assert reps_q1.aggregate(s=Sum("amount"))["s"] == Decimal("90000.00")
    assert amount(allocated, period=q1, territory=t2, rep=world.reps["W-T2"]) == Decimal("110000.00")
    assert_consistent(allocated)
    history = QuotaChange.objects.filter(adjustment=adjustment)
    assert history.filter(territory=t1, period=q1, rep=None).get().old_amount == Decimal("100000.00")
    assert {h.actor for h in history} == {world.manager_west}
    with pytest.raises(ApplicationError):
        services.quota_adjustment_approve(adjustment=adjustment, actor=world.manager_west)


def test_a_manager_adjusts_only_inside_their_subtree(world, allocated):
    east = world.leaves["E-T1"], world.leaves["E-T2"]
    with pytest.raises(ApplicationError) as exc:
        services.quota_adjustment_propose(
            quota_plan=allocated,
            actor=world.manager_west,
            component="new",
            period=allocated.fiscal_year,
            from_territory=east[0],
            to_territory=east[1],
            amount="1",
            reason="not mine",
        )
    assert exc.value.status == 403
    # Between regions only planners may move quota, and another planner approves it.
    adjustment = services.quota_adjustment_propose(
        quota_plan=allocated,
        actor=world.planner,
        component="new",
        period=allocated.fiscal_year,
        from_territory=world.east,
        to_territory=world.west,
        amount="1200",
        reason="West hired two reps",
    )
    assert adjustment.approver_territory is None
    with pytest.raises(ApplicationError):
        services.quota_adjustment_approve(adjustment=adjustment, actor=world.planner)
    services.quota_adjustment_approve(adjustment=adjustment, actor=world.admin)
    assert amount(allocated, period=allocated.fiscal_year, territory=world.west) == Decimal("601200.00")
    assert amount(allocated, period=allocated.fiscal_year) == Decimal("1200000.00")
    assert_consistent(allocated)


def test_region_manager_proposal_goes_to_planners_and_needs_a_reason(world, allocated):
    t1, t2 = west_leaves(world)
    kwargs = dict(
        quota_plan=allocated, actor=world.manager_west, component="new", period=allocated.fiscal_year,
        from_territory=t1, to_territory=t2,
    )  # fmt: skip
    with pytest.raises(ApplicationError) as exc:
        services.quota_adjustment_propose(amount="10", reason=" ", **kwargs)
    assert "reason" in exc.value.errors
    with pytest.raises(ApplicationError) as exc:
        services.quota_adjustment_propose(amount="300000.01", reason="too much", **kwargs)
    assert "amount" in exc.value.errors
    with pytest.raises(ApplicationError):
        services.quota_adjustment_propose(
            **{**kwargs, "to_territory": world.leaves["E-T1"]}, amount="10", reason="cousins"
        )
    adjustment = services.quota_adjustment_propose(amount="10", reason="fine", **kwargs)
    assert adjustment.approver_territory is None
    with pytest.raises(ApplicationError):
        services.quota_adjustment_reject(adjustment=adjustment, actor=world.planner, note="")
    services.quota_adjustment_reject(adjustment=adjustment, actor=world.planner, note="not now")
    adjustment.refresh_from_db()
    assert adjustment.status == AdjustmentStatus.REJECTED
    assert amount(allocated, period=allocated.fiscal_year, territory=t1) == Decimal("300000.00")


def test_adjustment_between_reps(world, allocated, hierarchy_managers):
    manager_district, second_rep = hierarchy_managers
    services.quota_plan_allocate(quota_plan=allocated, unit="100", actor=world.planner)
    t1 = world.leaves["W-T1"]
    first = world.reps["W-T1"]
    year = allocated.fiscal_year
    assert amount(allocated, period=year, territory=t1, rep=first) == Decimal("150000.00")
    adjustment = services.quota_adjustment_propose(
        quota_plan=allocated, actor=manager_district, component="new", period=year, territory=t1,
        from_rep=first, to_rep=second_rep, amount="30000", reason="ramping",
    )  # fmt: skip
    services.quota_adjustment_approve(adjustment=adjustment, actor=world.manager_west)
    assert amount(allocated, period=year, territory=t1, rep=first) == Decimal("120000.00")
    assert amount(allocated, period=year, territory=t1, rep=second_rep) == Decimal("180000.00")
    assert amount(allocated, period=year, territory=t1) == Decimal("300000.00")
    assert_consistent(allocated)


def test_relief_moves_quota_with_the_account_and_keeps_the_company_total(world, allocated):
    account = world.accounts["W-T1"][0]
    result = account_assignments_move(
        plan=world.plan, account_ids=[account.pk], territory=world.leaves["E-T1"], actor=world.planner
    )
    today = dt.date.today()
    reliefs = services.quota_relief_for_batch(
        quota_plan=allocated, plan=world.plan, batch=result["batch"], event="assignment.changed"
    )
    assert len(reliefs) == 1
    relief = reliefs[0]
    assert relief.from_code == "W-T1" and relief.to_code == "E-T1"
    year = allocated.fiscal_year
    totals = Quota.objects.filter(quota_plan=allocated, period=year, territory=None)
    assert {q.component: q.amount for q in totals}["new"] == Decimal("1200000.00")
    east = amount(allocated, period=year, territory=world.east)
    west = amount(allocated, period=year, territory=world.west)
    assert east + west == Decimal("1200000.00")
    if today <= year.end:
        assert relief.status == ReliefStatus.APPLIED
        assert west < Decimal("600000.00") and relief.total > 0
        assert west == Decimal("600000.00") - Decimal(relief.amounts["new"])
    else:
        assert relief.status == ReliefStatus.SKIPPED
    assert_consistent(allocated)
    # The same batch again changes nothing (a retried task).
    assert (
        services.quota_relief_for_batch(
            quota_plan=allocated, plan=world.plan, batch=result["batch"], event="assignment.changed"
        )
        == []
    )
    assert QuotaRelief.objects.count() == 1


def test_relief_for_a_published_plan_matches_territories_by_code(world, allocated):
    """A new plan takes over on 1 July: half of W-T1's account potential moved to W-T2."""
    from territories.models import AccountAssignment
    from territories.services import plan_clone

    clone = plan_clone(plan=world.plan, name="Mid-year", actor=world.planner)
    moved = world.accounts["W-T1"][0]
    AccountAssignment.objects.filter(plan=clone, account=moved).update(
        territory=clone.territories.get(code="W-T2")
    )
    reliefs = services.quota_relief_for_publish(
        quota_plan=allocated, new_plan=clone, old_plan=world.plan,
        effective_from=dt.date(2026, 7, 1), event="plan.published",
    )  # fmt: skip
    assert [r.status for r in reliefs] == [ReliefStatus.APPLIED]
    year = allocated.fiscal_year
    h1 = FiscalPeriod.objects.filter(name__in=["FY2026-Q1", "FY2026-Q2"])
    q3, q4 = FiscalPeriod.objects.get(name="FY2026-Q3"), FiscalPeriod.objects.get(name="FY2026-Q4")
    t1, t2 = world.leaves["W-T1"], world.leaves["W-T2"]
    for quarter in h1:
        assert amount(allocated, period=quarter, territory=t1) == amount(
            allocated, period=quarter, territory=t2
        )
    # The second half of T1's quota is halved (the account held half its potential) and T2 gains it.
    q34 = amount(allocated, period=q3, territory=t2) + amount(allocated, period=q4, territory=t2)
    assert amount(allocated, period=q3, territory=t1) + amount(allocated, period=q4, territory=t1) == q34 / 3
    assert amount(allocated, period=year, territory=world.west) == Decimal("600000.00")
    assert_consistent(allocated)


def test_activity_goals(world, allocated):
    leaf = world.leaves["W-T1"]
    goal = services.activity_goal_set(
        quota_plan=allocated, territory=leaf, metric="calls_per_week", target="40", actor=world.manager_west
    )
    assert goal.target == Decimal("40")
    services.activity_goal_set(
        quota_plan=allocated, territory=leaf, metric="calls_per_week", target="45", actor=world.manager_west
    )
    with pytest.raises(ApplicationError):
        services.activity_goal_set(
            quota_plan=allocated, territory=leaf, metric="retention_rate", target="90", actor=world.planner
        )
    with pytest.raises(ApplicationError) as exc:
        services.activity_goal_set(
            quota_plan=allocated, territory=world.leaves["E-T1"], metric="calls_per_week", target="1",
            actor=world.manager_west,
        )  # fmt: skip
    assert exc.value.status == 403
    assert selectors.activity_goal_list(
        user=world.manager_west, quota_plan=allocated
    ).get().target == Decimal("45")


def test_rep_reads_own_split_only(world, allocated, hierarchy_managers):
    _, second = hierarchy_managers
    from accounts.choices import Role

    from ..factories import UserFactory

    second.user = UserFactory(username="second", role=Role.REP)
    second.save()
    services.quota_plan_allocate(quota_plan=allocated, unit="100", actor=world.planner)
    visible = selectors.quota_list(user=second.user, quota_plan=allocated)
    assert {q.rep_id for q in visible} == {None, second.pk}
    assert {q.territory.code for q in visible} == {"W-T1"}
    managed = selectors.quota_list(user=world.manager_west, quota_plan=allocated)
    assert {q.territory.code for q in managed} == {"W", "W-D1", "W-T1", "W-T2"}
    assert managed.filter(rep=second).exists()


def test_relief_over_several_batches_conserves_every_total(world, allocated):
    """Accounts move both ways across regions and inside a region; each month's company total and
    every parent-equals-children sum hold after each batch."""
    year = allocated.fiscal_year
    months = list(FiscalPeriod.objects.filter(parent__parent=year).order_by("start"))

    def company_by_month():
        return {
            (q.period_id, q.component): q.amount
            for q in Quota.objects.filter(quota_plan=allocated, territory=None, period__in=months)
        }

    def top_level_by_month():
        totals = {}
        for q in Quota.objects.filter(
            quota_plan=allocated, territory__isnull=False, territory__parent=None, rep=None, period__in=months
        ):
            key = (q.period_id, q.component)
            totals[key] = totals.get(key, Decimal(0)) + q.amount
        return totals

    before = company_by_month()
    moves = [
        (world.accounts["W-T1"], world.leaves["E-T1"]),
        (world.accounts["E-T2"][:1], world.leaves["W-T2"]),
        (world.accounts["W-T2"][:1], world.leaves["W-T1"]),
    ]
    for accounts, target in moves:
        result = account_assignments_move(
            plan=world.plan, account_ids=[a.pk for a in accounts], territory=target, actor=world.planner
        )
        services.quota_relief_for_batch(
            quota_plan=allocated, plan=world.plan, batch=result["batch"], event="assignment.changed"
        )
        assert company_by_month() == before
        assert top_level_by_month() == before
        assert_consistent(allocated)
        if target == world.leaves["E-T1"] and dt.date.today() <= year.end:
            # W-T1 gave away all of its potential: nothing is left of its quota after this month.
            later = [m for m in months if m.start > dt.date.today()]
            for month in later:
                for component in ("new", "renewal", "upsell"):
                    assert (
                        amount(allocated, period=month, territory=world.leaves["W-T1"], component=component)
                        == 0
                    )
    # W-T1 gave away all of its accounts' potential, then took one back: its relief lines say so.
    lines = QuotaRelief.objects.filter(quota_plan=allocated).order_by("id")
    assert [(r.from_code, r.to_code) for r in lines] == [
        ("W-T1", "E-T1"), ("W-T1", "E-T1"), ("E-T2", "W-T2"), ("W-T2", "W-T1"),
    ]  # fmt: skip

"""Balance jobs: parameters, the problem built from a plan, cancel, and (with the optimizer) the
scenario written from a solution. The input plan is never changed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.gis.geos import Point
from django.core.management import CommandError, call_command

from accounts.choices import Role
from territories.balancing import (
    balance_job_cancel,
    balance_job_create,
    balance_job_run,
    balance_parameters_clean,
    balance_problem_build,
)
from territories.choices import AssignmentSource, ChangeKind, JobStatus, PlanStatus
from territories.models import AccountAssignment, BalanceJob, Change, Plan, Territory, UnitAssignment
from tessera_common.errors import ApplicationError

from ..factories import (
    AccountFactory,
    GeoUnitFactory,
    PlanFactory,
    RepFactory,
    TerritoryFactory,
    UserFactory,
    add_member,
    assign_unit,
    square,
)

pytestmark = pytest.mark.django_db


def lopsided_plan(*, accounts_per_side: int = 12) -> Plan:
    """Two leaves West (x < 0) and East (x > 0); every account starts in West, so balancing must
    move about half of them. Reps live on their side."""
    plan = PlanFactory(name="Lopsided")
    region = TerritoryFactory(plan=plan, code="R", name="Region", level_name="region")
    west = TerritoryFactory(plan=plan, parent=region, code="A-W", name="West")
    east = TerritoryFactory(plan=plan, parent=region, code="B-E", name="East")
    add_member(west, RepFactory(home_location=Point(-5, 0, srid=4326)))
    add_member(east, RepFactory(home_location=Point(5, 0, srid=4326)))
    for side in (-1, 1):
        for i in range(accounts_per_side):
            account = AccountFactory(
                location=Point(side * (2 + i % 4), (i // 4) - 1, srid=4326), revenue=Decimal("1000")
            )
            AccountAssignment.objects.create(
                plan=plan, account=account, territory=west, source=AssignmentSource.MANUAL
            )
    return plan


def test_parameters_get_defaults_and_bad_ones_are_named():
    cleaned = balance_parameters_clean({})
    assert cleaned["mode"] == "rebalance" and cleaned["level"] == "accounts"
    assert cleaned["metrics"] == ["revenue", "workload_hours", "count"]
    assert cleaned["keep_locks"] is True and cleaned["disruption_weight"] == 1.0
    assert balance_parameters_clean({"mode": "design"})["disruption_weight"] == 0.0
    assert balance_parameters_clean({"mode": "sweep"})["sweep_weights"] == [0.0, 0.5, 1.0, 2.0, 5.0]
    with pytest.raises(ApplicationError) as caught:
        balance_parameters_clean(
            {"mode": "guess", "metrics": ["revenue", "height"], "tolerance": 2, "territories": 0, "x": 1}
        )
    assert set(caught.value.errors) == {"mode", "metrics", "tolerance", "territories", "x"}
    with pytest.raises(ApplicationError, match="weights"):
        balance_parameters_clean({"metrics": ["revenue", "count"], "weights": [1]})
    with pytest.raises(ApplicationError, match="territories"):
        balance_parameters_clean({"territories": 3, "per_rep": True})


def test_create_enqueues_on_commit_and_refuses_non_planners(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = balance_job_create(plan=world.plan, parameters={"mode": "design"}, actor=world.planner)
    assert len(callbacks) == 1
    assert job.status == JobStatus.QUEUED and job.parameters["mode"] == "design"
    with pytest.raises(ApplicationError, match="Only planners") as caught:
        balance_job_create(plan=world.plan, parameters={}, actor=world.manager_west)
    assert caught.value.status == 403
    with pytest.raises(ApplicationError, match="no territory with code"):
        balance_job_create(
            plan=world.plan, parameters={"subtree": "NOPE"}, actor=world.planner, enqueue=False
        )


def test_accounts_problem_has_current_owners_locks_and_subtree(world):
    locked = world.accounts["W-T2"][0]
    AccountAssignment.objects.filter(plan=world.plan, account=locked).update(locked=True)
    AccountFactory(location=None)  # no location: reported, not balanced
    built = balance_problem_build(plan=world.plan, parameters=balance_parameters_clean({}))
    problem = built.problem
    assert [t.code for t in built.leaves] == ["E-T1", "E-T2", "W-T1", "W-T2"]
    assert problem.n == 8 and problem.k == 4
    assert problem.metrics.shape == (8, 3) and problem.metrics[0].tolist() == [1000.0, 10.0, 1.0]
    owners = {a: built.leaves[j].code for a, j in zip(built.entity_ids, problem.current, strict=True)}
    assert owners[world.accounts["E-T2"][1].pk] == "E-T2"
    assert problem.locked.tolist().count(3) == 1 and (problem.locked >= 0).sum() == 1
    assert built.frozen == {"accounts_without_location": 1}

    unlocked = balance_problem_build(
        plan=world.plan, parameters=balance_parameters_clean({"keep_locks": False})
    )
    assert unlocked.problem.locked is None
    design = balance_problem_build(plan=world.plan, parameters=balance_parameters_clean({"mode": "design"}))
    assert design.problem.current is None

    west = balance_problem_build(plan=world.plan, parameters=balance_parameters_clean({"subtree": "W"}))
    assert [t.code for t in west.leaves] == ["W-T1", "W-T2"] and west.problem.n == 4
    assert set(west.entity_ids) == {a.pk for code in ("W-T1", "W-T2") for a in world.accounts[code]}


def test_per_rep_anchors_at_rep_homes_and_needs_every_rep(world):
    for i, code in enumerate(["E-T1", "E-T2", "W-T1", "W-T2"]):
        rep = world.reps[code]
        rep.home_location = Point(i, -i, srid=4326)
        rep.capacity_fte = Decimal("0.5") if code == "W-T1" else Decimal("1")
        rep.save()
    built = balance_problem_build(plan=world.plan, parameters=balance_parameters_clean({"per_rep": True}))
    assert built.problem.anchors.tolist() == [[0, 0], [1, -1], [2, -2], [3, -3]]
    assert built.problem.capacity.tolist() == [1, 1, 0.5, 1]
    assert built.problem.k is None and built.problem.territory_count == 4
    world.reps["W-T2"].home_location = None
    world.reps["W-T2"].save()
    with pytest.raises(ApplicationError, match="missing in W-T2"):
        balance_problem_build(plan=world.plan, parameters=balance_parameters_clean({"per_rep": True}))


def test_units_problem_sums_accounts_by_finest_unit_with_adjacency():
    plan = PlanFactory()
    a, b = TerritoryFactory(plan=plan, code="A"), TerritoryFactory(plan=plan, code="B")
    units = [GeoUnitFactory(geom=square(x, 0)) for x in range(4)]
    for left, right in zip(units, units[1:], strict=False):
        left.adjacent.add(right)
    state = GeoUnitFactory(level="state", geom=square(0, 0, 4))  # coarser: must not double-count
    for unit, territory in zip(units, [a, a, b, b], strict=True):
        assign_unit(plan, unit, territory)
    assign_unit(plan, state, b)
    UnitAssignment.objects.filter(unit=units[3]).update(locked=True)
    for x, revenue in [(0.5, 100), (0.6, 50), (2.5, 10)]:
        AccountFactory(location=Point(x, 0.5, srid=4326), revenue=Decimal(revenue))
    built = balance_problem_build(
        plan=plan, parameters=balance_parameters_clean({"level": "units", "metrics": ["revenue", "count"]})
    )
    problem = built.problem
    order = {pk: i for i, pk in enumerate(built.entity_ids)}
    assert problem.n == 5
    assert problem.metrics[order[units[0].pk]].tolist() == [150.0, 2.0]
    assert problem.metrics[order[units[2].pk]].tolist() == [10.0, 1.0]
    assert problem.metrics[order[state.pk]].tolist() == [0.0, 0.0]
    adjacency = problem.adjacency.toarray()
    assert adjacency[order[units[0].pk], order[units[1].pk]] == 1
    assert adjacency[order[units[1].pk], order[units[0].pk]] == 1
    assert adjacency[order[units[0].pk], order[units[2].pk]] == 0
    assert adjacency.sum() == 6
    assert problem.locked[order[units[3].pk]] == 1 and (problem.locked >= 0).sum() == 1


def test_cancel_a_queued_job_and_refuse_a_finished_one(world):
    job = balance_job_create(plan=world.plan, parameters={}, actor=world.planner, enqueue=False)
    with pytest.raises(ApplicationError, match="creator or a planner"):
        balance_job_cancel(job=job, actor=world.outsider)
    job = balance_job_cancel(job=job, actor=world.planner)
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    # The worker that picks it up later does nothing.
    assert balance_job_run(job=job).status == JobStatus.CANCELLED
    assert not Plan.objects.filter(based_on=world.plan).exists()
    with pytest.raises(ApplicationError, match="nothing to cancel") as caught:
        balance_job_cancel(job=job, actor=world.planner)
    assert caught.value.status == 409


def test_command_refuses_bad_input(world):
    with pytest.raises(CommandError, match="No single plan"):
        call_command("balance", "no such plan", verbosity=0)
    with pytest.raises(CommandError, match="no territory with code"):
        call_command("balance", str(world.plan.pk), "--subtree", "NOPE", verbosity=0)
    with pytest.raises(CommandError, match="tolerance"):
        call_command("balance", str(world.plan.pk), "--tolerance", "7", verbosity=0)
    assert not BalanceJob.objects.exists()


# --- with the optimizer ---------------------------------------------------------------------------


def run(plan: Plan, actor=None, **parameters) -> BalanceJob:
    job = balance_job_create(plan=plan, parameters=parameters, actor=actor, enqueue=False)
    seen = []
    job = balance_job_run(job=job, progress=lambda p, m: seen.append(p))
    assert seen == sorted(seen) and seen[-1] == 100 or job.status != JobStatus.SUCCEEDED, seen
    return job


def test_rebalance_writes_a_new_scenario_and_leaves_the_input_alone():
    plan = lopsided_plan()
    planner = UserFactory(username="planner", role=Role.PLANNER)
    before = list(AccountAssignment.objects.filter(plan=plan).values_list("account_id", "territory_id"))
    job = run(plan, actor=planner, metrics=["revenue", "count"], tolerance=0.1, disruption_weight=0.1)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (
        list(AccountAssignment.objects.filter(plan=plan).values_list("account_id", "territory_id")) == before
    )
    scenario = job.produced_plan
    assert scenario.based_on == plan and scenario.status == PlanStatus.DRAFT
    assert scenario.name.startswith("Lopsided – balanced ")
    counts = {
        t.code: AccountAssignment.objects.filter(plan=scenario, territory=t).count()
        for t in Territory.objects.filter(plan=scenario, children__isnull=True)
    }
    # ±10% of 12 accounts each.
    assert set(counts) == {"A-W", "B-E"} and sum(counts.values()) == 24
    assert all(11 <= c <= 13 for c in counts.values()), counts
    moved = AccountAssignment.objects.filter(plan=scenario, source=AssignmentSource.OPTIMIZER)
    assert moved.count() == job.result["moved_count"] >= 11
    changes = Change.objects.filter(plan=scenario, kind=ChangeKind.ACCOUNT_MOVED)
    assert changes.count() == moved.count() and changes.values("batch").distinct().count() == 1
    result = job.result
    assert result["within_tolerance"] and result["worst_deviation"]["count"] <= 0.1
    assert [t["code"] for t in result["territories"]] == ["A-W", "B-E"]
    assert result["reasons"] and {r["from"] for r in result["reasons"]} == {"A-W"}
    assert scenario.metrics["balance"]["job"] == job.pk
    assert scenario.metrics["balance"]["moved_count"] == result["moved_count"]


def test_locked_accounts_stay_and_design_ignores_current_owners():
    plan = lopsided_plan(accounts_per_side=4)
    east_account = next(
        a
        for a in AccountAssignment.objects.filter(plan=plan).select_related("account")
        if a.account.location.x > 0
    )
    AccountAssignment.objects.filter(pk=east_account.pk).update(locked=True)
    job = run(plan, mode="design", metrics=["count"], tolerance=0.3, name="Designed")
    assert job.status == JobStatus.SUCCEEDED, job.error
    kept = AccountAssignment.objects.get(plan=job.produced_plan, account_id=east_account.account_id)
    assert kept.territory.code == "A-W" and kept.locked
    assert job.produced_plan.name == "Designed"


def test_sweep_stores_its_points():
    plan = lopsided_plan(accounts_per_side=6)
    job = run(plan, mode="sweep", metrics=["count"], tolerance=0.2, sweep_weights=[0, 1, 100])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert [p["disruption_weight"] for p in job.result["sweep"]] == [0, 1, 100]
    assert all(0 <= p["moved_share"] <= 1 for p in job.result["sweep"])


def test_units_rebalance_moves_units_and_rebuilds_accounts():
    plan = PlanFactory()
    a, b = TerritoryFactory(plan=plan, code="A"), TerritoryFactory(plan=plan, code="B")
    units = [GeoUnitFactory(geom=square(x, 0)) for x in range(4)]
    for left, right in zip(units, units[1:], strict=False):
        left.adjacent.add(right)
    for unit, territory in zip(units, [a, a, a, b], strict=True):
        assign_unit(plan, unit, territory)
    for x in range(4):
        AccountFactory(location=Point(x + 0.5, 0.5, srid=4326))
    job = run(plan, level="units", metrics=["count"], tolerance=0.01, disruption_weight=0.01)
    assert job.status == JobStatus.SUCCEEDED, job.error
    scenario = job.produced_plan
    owners = dict(UnitAssignment.objects.filter(plan=scenario).values_list("unit_id", "territory__code"))
    assert [owners[u.pk] for u in units] == ["A", "A", "B", "B"]
    assert UnitAssignment.objects.filter(plan=scenario, source=AssignmentSource.OPTIMIZER).count() == 1
    assert Change.objects.filter(plan=scenario, kind=ChangeKind.UNIT_MOVED).count() == 1
    accounts = AccountAssignment.objects.filter(plan=scenario)
    assert sorted(accounts.values_list("territory__code", flat=True)) == ["A", "A", "B", "B"]
    assert job.result["contiguous"] is True


def test_infeasible_request_fails_the_job_with_the_solvers_message():
    plan = lopsided_plan(accounts_per_side=2)
    AccountAssignment.objects.filter(plan=plan).update(locked=True)  # all four locked in West
    job = run(plan, metrics=["count"], tolerance=0.01)
    assert job.status == JobStatus.FAILED
    assert job.error and job.finished_at is not None
    assert not Plan.objects.filter(based_on=plan).exists()


def test_cancel_requested_before_solving_ends_cancelled():
    plan = lopsided_plan(accounts_per_side=4)
    job = balance_job_create(plan=plan, parameters={}, enqueue=False)
    BalanceJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    job = balance_job_run(job=job)
    assert job.status == JobStatus.CANCELLED
    assert not Plan.objects.filter(based_on=plan).exists()


def test_command_balances_and_prints_a_summary(capsys):
    plan = lopsided_plan(accounts_per_side=4)
    call_command("balance", str(plan.pk), "--metrics", "revenue,count", "--tolerance", "0.2", verbosity=0)
    out = capsys.readouterr().out
    assert "wrote plan" in out and "A-W" in out and "B-E" in out and "worst deviation" in out
    assert Plan.objects.filter(based_on=plan).count() == 1


@pytest.mark.parametrize("side", [-1, 1])
def test_design_keeps_each_leaf_where_most_of_its_accounts_are(side):
    plan = lopsided_plan(accounts_per_side=8)
    # Put one half in the other leaf: whichever way round, the design finds the same split, and each
    # solver territory must go to the leaf that already holds it (nothing changes owner).
    other = Territory.objects.get(plan=plan, code="B-E")
    for assignment in AccountAssignment.objects.filter(plan=plan).select_related("account"):
        if assignment.account.location.x * side > 0:
            AccountAssignment.objects.filter(pk=assignment.pk).update(territory=other)
    job = run(plan, mode="design", metrics=["count"], tolerance=0.05)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["reassigned_count"] == 0
    assert [t["totals"]["count"] for t in job.result["territories"]] == [8, 8]


def test_an_entity_named_by_the_solver_is_named_for_the_planner():
    plan = lopsided_plan(accounts_per_side=2)
    whale = AccountAssignment.objects.filter(plan=plan).first().account
    whale.revenue = Decimal("1000000")
    whale.save()
    job = run(plan, metrics=["revenue"], tolerance=0.05)
    assert job.status == JobStatus.FAILED
    assert f"({whale.name}, id {whale.pk})" in job.error, job.error

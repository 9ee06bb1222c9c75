"""Plan lifecycle, cloning, optimistic locking and the named database constraints."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, IntegrityError, transaction

from territories import services
from territories.choices import AssignmentRole, AssignmentSource, PlanStatus
from territories.models import AccountAssignment, Change, Plan, Territory, TerritoryMembership, UnitAssignment
from tessera_common.errors import ApplicationError, StaleVersionError

from ..factories import AccountFactory, GeoUnitFactory, PlanFactory, TerritoryFactory, assign_unit

pytestmark = pytest.mark.django_db

JAN = dt.date(2026, 1, 1)
JUL = dt.date(2026, 7, 1)


def approved(name="P"):
    return PlanFactory(name=name, status=PlanStatus.APPROVED)


def test_one_active_plan_per_date_is_a_database_constraint():
    Plan.objects.create(name="A", status=PlanStatus.ACTIVE, effective_from=JAN)
    with pytest.raises(IntegrityError, match="plan_one_active_per_date"), transaction.atomic():
        Plan.objects.create(name="B", status=PlanStatus.ACTIVE, effective_from=JUL)
    # Non-overlapping periods are fine.
    Plan.objects.filter(name="A").update(effective_to=JUL)
    Plan.objects.create(name="B", status=PlanStatus.ACTIVE, effective_from=JUL)


def test_active_plan_needs_an_effective_date():
    with pytest.raises(IntegrityError, match="plan_active_has_effective_from"), transaction.atomic():
        Plan.objects.create(name="A", status=PlanStatus.ACTIVE)


def test_one_primary_owner_per_account_per_plan(world):
    account = world.accounts["E-T1"][0]
    with pytest.raises(IntegrityError, match="account_assignment_one_primary_per_plan"), transaction.atomic():
        AccountAssignment.objects.create(
            plan=world.plan, account=account, territory=world.leaves["W-T1"], source=AssignmentSource.MANUAL
        )
    AccountAssignment.objects.create(
        plan=world.plan,
        account=account,
        territory=world.leaves["W-T1"],
        source=AssignmentSource.MANUAL,
        role=AssignmentRole.OVERLAY,
    )


def test_changes_are_append_only_in_the_database(world):
    change = Change.objects.create(plan=world.plan, kind="plan_created")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Change.objects.filter(pk=change.pk).update(kind="account_moved")
    with pytest.raises(ValueError, match="append-only"):
        change.save()


def test_deleting_a_territory_keeps_its_history(world):
    leaf = world.leaves["W-T2"]
    services.account_assignments_move(
        plan=world.plan, account_ids=[world.accounts["E-T1"][0].pk], territory=leaf, lock=True
    )
    change = Change.objects.get(territory_to=leaf)
    leaf.delete()
    change.refresh_from_db()
    assert change.territory_to is None and change.kind == "account_moved"


def test_publish_supersedes_the_active_plan_on_the_date():
    old = approved("Old")
    services.plan_publish(plan=old, effective_from=JAN)
    new = approved("New")
    services.plan_publish(plan=new, effective_from=JUL)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.status, old.effective_to) == (PlanStatus.ACTIVE, JUL)
    assert (new.status, new.effective_from, new.effective_to) == (PlanStatus.ACTIVE, JUL, None)
    assert services.plans_activate_due(today=dt.date(2026, 6, 30)) == []
    assert services.plans_activate_due(today=JUL) == [old.pk]
    old.refresh_from_db()
    assert old.status == PlanStatus.ARCHIVED


def test_publish_refuses_a_date_before_a_later_active_plan():
    services.plan_publish(plan=approved("Later"), effective_from=JUL)
    with pytest.raises(ApplicationError, match="already active from 2026-07-01"):
        services.plan_publish(plan=approved("Earlier"), effective_from=JAN)


def test_only_approved_plans_publish_and_transitions_cannot_be_skipped():
    plan = PlanFactory()
    with pytest.raises(ApplicationError, match="Only an approved plan"):
        services.plan_publish(plan=plan, effective_from=JAN)
    with pytest.raises(ApplicationError, match="cannot become approved"):
        services.plan_transition(plan=plan, status=PlanStatus.APPROVED)
    with pytest.raises(ApplicationError, match="Unknown plan status"):
        services.plan_transition(plan=plan, status="published")
    services.plan_transition(plan=plan, status=PlanStatus.IN_REVIEW)
    services.plan_transition(plan=plan, status=PlanStatus.APPROVED)
    assert services.plan_publish(plan=plan, effective_from=JAN).status == PlanStatus.ACTIVE


def test_stale_version_is_refused_with_409_and_changes_nothing(world):
    plan = world.plan
    account = world.accounts["E-T1"][0]
    services.account_assignments_move(
        plan=plan, account_ids=[account.pk], territory=world.leaves["E-T2"], expected_version=plan.version
    )
    with pytest.raises(StaleVersionError) as error:
        services.account_assignments_move(
            plan=plan, account_ids=[account.pk], territory=world.leaves["W-T1"], expected_version=plan.version
        )
    assert error.value.status == 409
    assert AccountAssignment.objects.get(plan=plan, account=account).territory == world.leaves["E-T2"]


def test_moves_refuse_non_leaf_territories_and_unknown_accounts(world):
    with pytest.raises(ApplicationError, match="not a leaf"):
        services.account_assignments_move(
            plan=world.plan, account_ids=[world.accounts["E-T1"][0].pk], territory=world.east
        )
    with pytest.raises(ApplicationError, match="do not exist: 999999"):
        services.account_assignments_move(
            plan=world.plan, account_ids=[999999], territory=world.leaves["E-T1"]
        )


def test_move_records_one_batch_of_changes(world):
    accounts = world.accounts["E-T1"]
    result = services.account_assignments_move(
        plan=world.plan,
        account_ids=[a.pk for a in accounts],
        territory=world.leaves["W-T1"],
        actor=world.planner,
    )
    changes = Change.objects.filter(batch=result["batch"])
    assert result["moved"] == 2 == changes.count()
    assert {c.territory_from for c in changes} == {world.leaves["E-T1"]}
    assert all(c.actor == world.planner for c in changes)


def test_move_of_owned_unowned_and_unchanged_accounts_writes_each_once(world):
    from territories.choices import ChangeKind

    owned = world.accounts["E-T1"][0]
    unowned = AccountFactory()
    already = world.accounts["W-T1"][0]
    target = world.leaves["W-T1"]
    # An overlay row of the target on the moved account must give way to the new primary row.
    AccountAssignment.objects.create(
        plan=world.plan,
        account=owned,
        territory=target,
        role=AssignmentRole.OVERLAY,
        source=AssignmentSource.MANUAL,
    )
    source_before = AccountAssignment.objects.get(
        plan=world.plan, account=owned, role=AssignmentRole.PRIMARY
    ).source
    already_before = AccountAssignment.objects.get(plan=world.plan, account=already)
    result = services.account_assignments_move(
        plan=world.plan,
        account_ids=[owned.pk, unowned.pk, already.pk, owned.pk],
        territory=target,
        actor=world.planner,
    )
    assert result["moved"] == 2
    rows = AccountAssignment.objects.filter(plan=world.plan, account__in=[owned, unowned])
    assert {(r.account_id, r.role, r.territory_id, r.source) for r in rows} == {
        (owned.pk, AssignmentRole.PRIMARY, target.pk, AssignmentSource.MANUAL),
        (unowned.pk, AssignmentRole.PRIMARY, target.pk, AssignmentSource.MANUAL),
    }
    # Already there: untouched.
    already_after = AccountAssignment.objects.get(plan=world.plan, account=already)
    assert (already_after.source, already_after.updated) == (already_before.source, already_before.updated)
    changes = {c.account_id: c for c in Change.objects.filter(batch=result["batch"])}
    assert set(changes) == {owned.pk, unowned.pk}
    moved = changes[owned.pk]
    assert (moved.kind, moved.territory_from, moved.territory_to, moved.actor) == (
        ChangeKind.ACCOUNT_MOVED,
        world.leaves["E-T1"],
        target,
        world.planner,
    )
    assert moved.plan_version == result["version"] and moved.at is not None
    assert moved.payload == {"locked": False, "was_locked": False, "from_source": source_before}
    assert changes[unowned.pk].territory_from is None
    assert changes[unowned.pk].payload["from_source"] is None

    # Locking without moving is a lock change, recorded and applied; the unknown id refuses it all.
    locked = services.account_assignments_move(
        plan=world.plan, account_ids=[owned.pk], territory=target, lock=True
    )
    change = Change.objects.get(batch=locked["batch"])
    assert change.kind == ChangeKind.LOCK_CHANGED and change.payload["locked"] is True
    assert AccountAssignment.objects.get(plan=world.plan, account=owned, role=AssignmentRole.PRIMARY).locked
    with pytest.raises(ApplicationError, match="do not exist: 999999"):
        services.account_assignments_move(
            plan=world.plan, account_ids=[owned.pk, 999999], territory=world.leaves["E-T1"]
        )
    assert (
        AccountAssignment.objects.get(plan=world.plan, account=owned, role=AssignmentRole.PRIMARY).territory
        == target
    )


def test_the_any_lookup_matches_in_for_ids_and_foreign_keys(world):
    from accounts.models import Account

    ids = [a.pk for a in world.accounts["E-T1"]] + [999999]
    assert set(Account.objects.filter(pk__any=ids).values_list("pk", flat=True)) == set(ids[:-1])
    assert not Account.objects.filter(pk__any=[]).exists()
    by_fk = AccountAssignment.objects.filter(plan=world.plan, account_id__any=ids)
    assert set(by_fk.values_list("account_id", flat=True)) == set(ids[:-1])
    assert by_fk.count() == AccountAssignment.objects.filter(plan=world.plan, account_id__in=ids).count()


def test_clone_copies_everything_into_a_new_draft(world):
    unit = GeoUnitFactory()
    assign_unit(world.plan, unit, world.leaves["W-T1"])
    services.rule_create(
        plan=world.plan,
        territory=world.leaves["E-T2"],
        name="Zip",
        conditions=[{"field": "postal_code", "op": "in_postal_list"}],
        postal_codes=["10001", "10002"],
    )
    services.account_assignments_move(
        plan=world.plan, account_ids=[world.accounts["E-T1"][0].pk], territory=world.leaves["W-T2"], lock=True
    )

    clone = services.plan_clone(plan=world.plan, name="Scenario B", actor=world.planner)

    assert (clone.status, clone.based_on, clone.version) == (PlanStatus.DRAFT, world.plan, 1)
    assert Territory.objects.filter(plan=clone).count() == Territory.objects.filter(plan=world.plan).count()
    leaf = Territory.objects.get(plan=clone, code="W-T1")
    assert (
        leaf.parent.code == "W-D1"
        and leaf.parent.plan == clone
        and leaf.parent.parent.manager == world.manager_west
    )
    assert TerritoryMembership.objects.filter(territory__plan=clone).count() == 4
    assert UnitAssignment.objects.get(plan=clone).territory == leaf
    rule = clone.rules.get()
    assert rule.territory.plan == clone and rule.postal_codes.count() == 2
    locked = AccountAssignment.objects.get(plan=clone, account=world.accounts["E-T1"][0])
    assert locked.locked and locked.territory.code == "W-T2" and locked.territory.plan == clone
    assert (
        AccountAssignment.objects.filter(plan=clone).count()
        == AccountAssignment.objects.filter(plan=world.plan).count()
    )
    # The original is untouched.
    assert (
        AccountAssignment.objects.get(plan=world.plan, account=world.accounts["E-T1"][0]).territory.plan
        == world.plan
    )


def test_archived_plans_cannot_be_edited(world):
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.ARCHIVED)
    with pytest.raises(ApplicationError, match="archived"):
        services.account_assignments_move(
            plan=world.plan, account_ids=[world.accounts["E-T1"][0].pk], territory=world.leaves["E-T2"]
        )


def test_rule_create_validates(world):
    with pytest.raises(ApplicationError, match="condition 1: unknown field"):
        services.rule_create(
            plan=world.plan, territory=world.leaves["E-T1"], name="x", conditions=[{"field": "x", "op": "eq"}]
        )
    with pytest.raises(ApplicationError, match="list is empty"):
        services.rule_create(
            plan=world.plan,
            territory=world.leaves["E-T1"],
            name="x",
            conditions=[{"field": "postal_code", "op": "in_postal_list"}],
        )
    other = TerritoryFactory()
    with pytest.raises(ApplicationError, match="another plan"):
        services.rule_create(plan=world.plan, territory=other, name="x", conditions=[])


def test_plan_create_needs_a_name():
    with pytest.raises(ApplicationError, match="needs a name"):
        services.plan_create(name="  ")
    assert services.plan_create(name="FY27").status == PlanStatus.DRAFT


def test_materialize_after_clone_keeps_locks(world):
    account = AccountFactory()
    services.account_assignments_move(
        plan=world.plan, account_ids=[account.pk], territory=world.leaves["E-T1"], lock=True
    )
    clone = services.plan_clone(plan=world.plan, name="C")
    services.plan_materialize(plan=clone)
    row = AccountAssignment.objects.get(plan=clone, account=account)
    assert row.locked and row.territory.code == "E-T1"


def test_large_bulk_writes_queue_a_refresh_of_the_statistics_of_what_they_wrote(
    world, monkeypatch, django_capture_on_commit_callbacks
):
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.services import account_bulk_upsert
    from tessera_common import db, tasks

    queued = []
    monkeypatch.setattr(tasks.analyze_tables, "delay", lambda labels: queued.append(labels))
    for label in ("accounts.Account", "territories.AccountAssignment", "territories.Change"):
        cache.delete(db.ANALYZE_PENDING_KEY.format(label=label))
    rows = [{"external_id": f"BULK-{i}", "name": f"Bulk {i}"} for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        account_bulk_upsert(rows=rows)
    assert queued == []  # small: autovacuum's job
    monkeypatch.setattr(db, "LARGE_WRITE_ROWS", 3)
    monkeypatch.setattr(db, "ANALYZE_GROWTH", 0)
    with django_capture_on_commit_callbacks(execute=True):
        account_bulk_upsert(rows=[{**r, "name": r["name"] + "!"} for r in rows])
    assert queued == [["accounts.Account"]]
    with django_capture_on_commit_callbacks(execute=True):
        services.plan_materialize(plan=world.plan)
    assert ["territories.AccountAssignment"] in queued or [
        "territories.AccountAssignment",
        "territories.Change",
    ] in queued
    # A scenario copied from a plan adds as many assignments again.
    owned = [a.pk for accounts in world.accounts.values() for a in accounts]
    services.account_assignments_move(plan=world.plan, account_ids=owned, territory=world.leaves["W-T1"])
    queued.clear()
    cache.delete(db.ANALYZE_PENDING_KEY.format(label="territories.AccountAssignment"))
    with django_capture_on_commit_callbacks(execute=True):
        services.plan_clone(plan=world.plan, name="Copy")
    assert queued == [["territories.AccountAssignment"]]

    # The worker's side: the named models' tables are analyzed, nothing else.
    with CaptureQueriesContext(connection) as queries:
        assert tasks.analyze_tables(["accounts.Account"]) == ["accounts_account"]
    assert [q["sql"] for q in queries.captured_queries] == ['ANALYZE "accounts_account"']

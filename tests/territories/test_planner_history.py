"""Undo and redo from the Change log: batches reverted by new batches, stacks that survive a
reload (they are read back from the rows), conflicts when someone else moved the same accounts,
locks, unit moves with their accounts, and the API around it."""

from __future__ import annotations

import pytest
from django.contrib.gis.geos import Point
from rest_framework.test import APIClient

from territories import history
from territories.choices import AssignmentRole, ChangeKind
from territories.models import AccountAssignment, Change
from territories.services import account_assignments_move, unit_assignments_move
from tessera_common.errors import ApplicationError
from tests.factories import GeoUnitFactory, TerritoryFactory, assign_unit, square


def owner(plan, account):
    row = AccountAssignment.objects.filter(plan=plan, account=account, role=AssignmentRole.PRIMARY).first()
    return (row.territory_id, row.locked) if row else (None, False)


def move(world, code, accounts, *, actor=None, lock=None):
    world.plan.refresh_from_db()
    return account_assignments_move(
        plan=world.plan,
        account_ids=[a.pk for a in accounts],
        territory=world.leaves[code],
        actor=actor or world.planner,
        lock=lock,
        expected_version=world.plan.version,
    )


def current_version(world) -> int:
    world.plan.refresh_from_db()
    return world.plan.version


def test_undo_puts_accounts_back_and_redo_moves_them_again(world):
    accounts = world.accounts["E-T1"]
    result = move(world, "W-T1", accounts)
    assert all(owner(world.plan, a)[0] == world.leaves["W-T1"].pk for a in accounts)

    undone = history.plan_undo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert undone["undone"] == result["batch"]
    assert undone["version"] == result["version"] + 1
    assert all(owner(world.plan, a)[0] == world.leaves["E-T1"].pk for a in accounts)
    reverts = Change.objects.filter(reverts__batch=result["batch"])
    assert reverts.count() == 2
    assert all(c.payload["history"] == "undo" for c in reverts)
    assert {c.territory_to_id for c in reverts} == {world.leaves["E-T1"].pk}

    stacks = history.plan_history(plan=world.plan, actor=world.planner).as_dict()
    assert stacks["undo"] == []
    assert [e["label"] for e in stacks["redo"]] == ["Moved 2 accounts to W-T1"]

    redone = history.plan_redo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert redone["redone"] == result["batch"]
    assert all(owner(world.plan, a)[0] == world.leaves["W-T1"].pk for a in accounts)
    stacks = history.plan_history(plan=world.plan, actor=world.planner).as_dict()
    assert [e["label"] for e in stacks["undo"]] == ["Moved 2 accounts to W-T1"]
    assert stacks["redo"] == []

    # Undo the redo: back again, and it can be redone once more.
    history.plan_undo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert all(owner(world.plan, a)[0] == world.leaves["E-T1"].pk for a in accounts)
    stacks = history.plan_history(plan=world.plan, actor=world.planner).as_dict()
    assert [e["label"] for e in stacks["redo"]] == ["Moved 2 accounts to W-T1"]
    history.plan_redo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert all(owner(world.plan, a)[0] == world.leaves["W-T1"].pk for a in accounts)


def test_stacks_are_per_user_and_ordered_newest_first(world):
    first = move(world, "W-T1", world.accounts["E-T1"][:1])
    second = move(world, "W-T2", world.accounts["E-T2"][:1])
    move(world, "E-T1", world.accounts["W-T1"][:1], actor=world.admin)
    stacks = history.plan_history(plan=world.plan, actor=world.planner).as_dict()
    assert [e["batch"] for e in stacks["undo"]] == [second["batch"], first["batch"]]
    admin_stacks = history.plan_history(plan=world.plan, actor=world.admin).as_dict()
    assert len(admin_stacks["undo"]) == 1


def test_a_new_edit_clears_the_redo_stack(world):
    move(world, "W-T1", world.accounts["E-T1"][:1])
    history.plan_undo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    move(world, "W-T2", world.accounts["E-T2"][:1])
    stacks = history.plan_history(plan=world.plan, actor=world.planner)
    assert stacks.redo == []
    with pytest.raises(ApplicationError, match="Nothing to redo"):
        history.plan_redo(plan=world.plan, actor=world.planner, expected_version=current_version(world))


def test_an_edit_history_cannot_revert_ends_the_undo_history(world):
    from territories.services import territory_create

    move(world, "W-T1", world.accounts["E-T1"][:1])
    world.plan.refresh_from_db()
    territory_create(
        plan=world.plan,
        name="New",
        code="E-T9",
        parent=world.leaves["E-T1"].parent,
        actor=world.planner,
        expected_version=world.plan.version,
    )
    assert history.plan_history(plan=world.plan, actor=world.planner).undo == []


def test_undo_refuses_when_someone_moved_the_accounts_since(world):
    account = world.accounts["E-T1"][0]
    move(world, "W-T1", [account])
    move(world, "W-T2", [account], actor=world.admin)
    with pytest.raises(ApplicationError) as refused:
        history.plan_undo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert refused.value.status == 409
    assert str(account.pk) in refused.value.message
    assert owner(world.plan, account)[0] == world.leaves["W-T2"].pk  # nothing written


def test_undo_refuses_a_stale_version(world):
    move(world, "W-T1", world.accounts["E-T1"][:1])
    with pytest.raises(ApplicationError) as refused:
        history.plan_undo(plan=world.plan, actor=world.planner, expected_version=1)
    assert refused.value.status == 409


def test_undo_of_a_move_from_unassigned_unassigns_again(world):
    from tests.factories import AccountFactory

    stray = AccountFactory()
    move(world, "E-T2", [stray], lock=True)
    assert owner(world.plan, stray) == (world.leaves["E-T2"].pk, True)
    history.plan_undo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert owner(world.plan, stray) == (None, False)


def test_lock_and_unlock_are_undoable(world):
    accounts = world.accounts["W-T1"]
    result = history.account_assignments_lock(
        plan=world.plan,
        account_ids=[a.pk for a in accounts],
        locked=True,
        actor=world.planner,
        expected_version=current_version(world),
    )
    assert result["changed"] == 2
    assert all(owner(world.plan, a) == (world.leaves["W-T1"].pk, True) for a in accounts)
    assert Change.objects.filter(batch=result["batch"], kind=ChangeKind.LOCK_CHANGED).count() == 2
    label = history.plan_history(plan=world.plan, actor=world.planner).as_dict()["undo"][0]["label"]
    assert label == "Locked 2 accounts"
    history.plan_undo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert all(owner(world.plan, a) == (world.leaves["W-T1"].pk, False) for a in accounts)


def test_locking_an_unassigned_account_is_refused(world):
    from tests.factories import AccountFactory

    stray = AccountFactory()
    with pytest.raises(ApplicationError, match="no territory in this plan"):
        history.account_assignments_lock(
            plan=world.plan, account_ids=[stray.pk], locked=True, actor=world.planner, expected_version=None
        )


def test_undo_of_a_unit_move_restores_the_unit_and_its_accounts(world):
    east_unit = GeoUnitFactory(geom=square(20, 20, 1))
    west_unit = GeoUnitFactory(geom=square(21, 20, 1))
    assign_unit(world.plan, east_unit, world.leaves["E-T1"])
    assign_unit(world.plan, west_unit, world.leaves["W-T1"])
    from tests.factories import AccountFactory

    inside = AccountFactory(location=Point(20.5, 20.5, srid=4326))
    world.plan.refresh_from_db()
    from territories.services import plan_materialize

    plan_materialize(plan=world.plan)
    assert owner(world.plan, inside)[0] == world.leaves["E-T1"].pk
    world.plan.refresh_from_db()
    unit_assignments_move(
        plan=world.plan,
        unit_ids=[east_unit.pk],
        territory=world.leaves["W-T1"],
        actor=world.planner,
        expected_version=world.plan.version,
    )
    assert owner(world.plan, inside)[0] == world.leaves["W-T1"].pk
    assert (
        history.plan_history(plan=world.plan, actor=world.planner)
        .as_dict()["undo"][0]["label"]
        .startswith("Moved 1 unit to W-T1")
    )
    history.plan_undo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert owner(world.plan, inside)[0] == world.leaves["E-T1"].pk
    assert east_unit.assignments.get(plan=world.plan).territory_id == world.leaves["E-T1"].pk
    history.plan_redo(plan=world.plan, actor=world.planner, expected_version=current_version(world))
    assert owner(world.plan, inside)[0] == world.leaves["W-T1"].pk


# ---------------------------------------------------------------------------------------------
# API


@pytest.fixture
def api(world):
    client = APIClient()
    client.force_authenticate(world.planner)
    return client


def test_undo_redo_and_history_over_the_api(api, world):
    result = move(world, "W-T2", world.accounts["E-T1"])
    url = f"/api/v1/plans/{world.plan.pk}/"
    listed = api.get(url + "history/").json()
    assert listed["undo"][0]["batch"] == result["batch"]
    assert listed["version"] == result["version"]

    response = api.post(url + "undo/", {"version": result["version"]}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"undone": result["batch"], "version": result["version"] + 1}
    stale = api.post(url + "redo/", {"version": result["version"]}, format="json")
    assert stale.status_code == 409
    assert "changed since you loaded it" in stale.json()["message"]
    response = api.post(url + "redo/", {"version": result["version"] + 1}, format="json")
    assert response.status_code == 200
    assert response.json()["redone"] == result["batch"]


def test_undo_needs_a_version_and_a_planner(api, world):
    url = f"/api/v1/plans/{world.plan.pk}/undo/"
    missing = api.post(url, {}, format="json")
    assert missing.status_code == 400
    assert "version" in missing.json()["errors"]
    nothing = api.post(url, {"version": world.plan.version}, format="json")
    assert nothing.status_code == 400
    assert "Nothing to undo" in nothing.json()["message"]
    world.plan.status = "in_review"
    world.plan.save()
    manager = APIClient()
    manager.force_authenticate(world.manager_west)
    assert manager.post(url, {"version": world.plan.version}, format="json").status_code == 403
    assert APIClient().post(url, {"version": 1}, format="json").status_code == 401


def test_locks_over_the_api(api, world):
    url = f"/api/v1/plans/{world.plan.pk}/locks/"
    ids = [a.pk for a in world.accounts["E-T2"]]
    response = api.post(
        url, {"account_ids": ids, "locked": True, "version": world.plan.version}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["changed"] == 2
    stale = api.post(url, {"account_ids": ids, "locked": False, "version": world.plan.version}, format="json")
    assert stale.status_code == 409
    bad = api.post(url, {"account_ids": [], "locked": True, "version": 99}, format="json")
    assert bad.status_code == 400
    assert "account_ids" in bad.json()["errors"]


def test_new_territory_helpers_do_not_break_history(world):
    # A territory without changes of its own by this user leaves the stacks alone.
    TerritoryFactory(plan=world.plan, parent=world.leaves["E-T1"].parent, code="E-T7")
    move(world, "W-T1", world.accounts["E-T1"][:1])
    assert len(history.plan_history(plan=world.plan, actor=world.planner).undo) == 1

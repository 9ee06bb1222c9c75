"""Editing territories by hand through the API: create, rename, re-parent, delete, merge, split and
attach reps. Every edit checks the plan version (409 when stale, nothing changed), is recorded as
Changes, names the bad field, and only planners may make it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_create
from territories import services
from territories.choices import AssignmentRole, ChangeKind, PlanStatus
from territories.models import (
    AccountAssignment,
    AssignmentRule,
    Change,
    Plan,
    Territory,
    TerritoryMembership,
    UnitAssignment,
)
from tests.factories import GeoUnitFactory, RepFactory, assign_unit, square

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def version(plan: Plan) -> int:
    plan.refresh_from_db()
    return plan.version


def owner(plan, account) -> str | None:
    row = AccountAssignment.objects.filter(plan=plan, account=account, role=AssignmentRole.PRIMARY).first()
    return row.territory.code if row else None


# --- create / update / delete -------------------------------------------------------------------


def test_planner_creates_a_territory_under_a_district_and_it_is_recorded(world):
    district = Territory.objects.get(plan=world.plan, code="W-D1")
    v = version(world.plan)
    response = client_for(world.planner).post(
        "/api/v1/territories/",
        {"plan": world.plan.pk, "name": "West 3", "code": "W-T3", "parent": district.pk, "version": v},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["code"] == "W-T3" and body["parent_id"] == district.pk and body["is_leaf"] is True
    assert body["version"] == v + 1 == version(world.plan)
    assert body["color"].startswith("#") and len(body["color"]) == 7
    change = Change.objects.get(plan=world.plan, kind=ChangeKind.TERRITORY_CREATED)
    assert change.territory_to_id == body["id"] and change.actor == world.planner
    assert change.plan_version == v + 1 and change.payload["parent_code"] == "W-D1"


def test_create_names_every_bad_field_and_changes_nothing(world):
    v = version(world.plan)
    leaf = world.leaves["E-T1"]
    response = client_for(world.planner).post(
        "/api/v1/territories/",
        {"plan": world.plan.pk, "name": " ", "code": "e-t1", "color": "red", "parent": leaf.pk, "version": v},
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"name", "code", "color", "parent"}
    assert "E-T1 is already used" in errors["code"][0]
    assert "owns 2 accounts" in errors["parent"][0]
    response = client_for(world.planner).post(
        "/api/v1/territories/",
        {"plan": world.plan.pk, "name": "X", "code": "X", "parent": 999999, "version": v},
        format="json",
    )
    assert response.status_code == 400 and "parent" in response.json()["errors"]
    response = client_for(world.planner).post(
        "/api/v1/territories/", {"plan": world.plan.pk, "name": "X", "code": "X"}, format="json"
    )
    assert response.status_code == 400 and response.json()["errors"] == {
        "version": ["This field is required."]
    }
    assert version(world.plan) == v and not Territory.objects.filter(code__in=["X", "e-t1"]).exists()


def test_a_stale_version_is_a_409_and_nothing_changes(world):
    leaf = world.leaves["W-T1"]
    v = version(world.plan)
    client = client_for(world.planner)
    response = client.patch(
        f"/api/v1/territories/{leaf.pk}/", {"name": "Renamed", "version": v}, format="json"
    )
    assert response.status_code == 200 and response.json()["version"] == v + 1
    response = client.patch(f"/api/v1/territories/{leaf.pk}/", {"name": "Again", "version": v}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert "changed since you loaded it" in body["message"] and "version" in body["errors"]
    leaf.refresh_from_db()
    assert leaf.name == "Renamed" and version(world.plan) == v + 1
    # If-Match works as well as a body field.
    response = client.patch(
        f"/api/v1/territories/{leaf.pk}/", {"name": "Header"}, format="json", HTTP_IF_MATCH=str(v + 1)
    )
    assert response.status_code == 200 and response.json()["name"] == "Header"


def test_rename_records_what_changed_and_a_no_op_keeps_the_version(world):
    leaf = world.leaves["E-T2"]
    v = version(world.plan)
    client = client_for(world.planner)
    response = client.patch(
        f"/api/v1/territories/{leaf.pk}/",
        {"name": "Boston", "code": "E-BOS", "color": "#112233", "version": v},
        format="json",
    )
    assert response.status_code == 200, response.json()
    change = Change.objects.get(kind=ChangeKind.TERRITORY_UPDATED)
    assert change.payload["changed"] == {
        "name": ["East 2", "Boston"],
        "code": ["E-T2", "E-BOS"],
        "color": ["#888888", "#112233"],
    }
    response = client.patch(
        f"/api/v1/territories/{leaf.pk}/", {"name": "Boston", "version": v + 1}, format="json"
    )
    assert response.status_code == 200 and response.json()["version"] == v + 1


def test_reparenting_refuses_cycles_and_leaves_that_own_accounts(world):
    v = version(world.plan)
    client = client_for(world.planner)
    district = Territory.objects.get(plan=world.plan, code="W-D1")
    response = client.patch(
        f"/api/v1/territories/{world.west.pk}/", {"parent": district.pk, "version": v}, format="json"
    )
    assert response.status_code == 400 and "descendants" in response.json()["errors"]["parent"][0]
    response = client.patch(
        f"/api/v1/territories/{district.pk}/", {"parent": world.east.pk, "version": v}, format="json"
    )
    assert response.status_code == 200
    district.refresh_from_db()
    assert district.parent == world.east


def test_delete_refuses_territories_that_own_something_and_deletes_empty_ones(world):
    client = client_for(world.planner)
    v = version(world.plan)
    leaf = world.leaves["W-T2"]
    response = client.delete(f"/api/v1/territories/{leaf.pk}/", {"version": v}, format="json")
    assert response.status_code == 400
    assert "still owns 2 accounts" in response.json()["message"] and "merge" in response.json()["message"]
    response = client.delete(f"/api/v1/territories/{world.west.pk}/", {"version": v}, format="json")
    assert response.status_code == 400 and "child territories" in response.json()["message"]
    empty = services.territory_create(plan=world.plan, name="Empty", code="EMPTY", expected_version=v)
    response = client.delete(f"/api/v1/territories/{empty.pk}/", HTTP_IF_MATCH=str(v + 1))
    assert response.status_code == 200 and response.json() == {"version": v + 2}
    assert not Territory.objects.filter(pk=empty.pk).exists()
    change = Change.objects.get(kind=ChangeKind.TERRITORY_DELETED)
    assert change.territory_from is None and change.payload["code"] == "EMPTY"


# --- merge / split -------------------------------------------------------------------------------


def test_merge_moves_accounts_units_rules_and_reps_in_one_batch(world):
    plan = world.plan
    source, into = world.leaves["W-T2"], world.leaves["W-T1"]
    unit = GeoUnitFactory(geom=square(10, 10))
    assign_unit(plan, unit, source)
    rule = services.rule_create(
        plan=plan,
        territory=source,
        name="Retail",
        conditions=[{"field": "industry", "op": "eq", "value": "Retail"}],
    )
    v = version(plan)
    response = client_for(world.planner).post(
        f"/api/v1/territories/{source.pk}/merge/", {"into": into.pk, "version": v}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == v + 1 and body["moved_accounts"] == 2 and body["moved_units"] == 1
    assert body["territory"]["code"] == "W-T1"
    assert {r["name"] for r in body["territory"]["reps"]} == {"Rep W-T1", "Rep W-T2"}
    assert not Territory.objects.filter(pk=source.pk).exists()
    assert all(owner(plan, a) == "W-T1" for a in world.accounts["W-T2"])
    assert UnitAssignment.objects.get(plan=plan, unit=unit).territory == into
    rule.refresh_from_db()
    assert rule.territory == into
    changes = Change.objects.filter(plan=plan, plan_version=v + 1)
    assert len({c.batch for c in changes}) == 1
    kinds = sorted(c.kind for c in changes)
    assert kinds.count(ChangeKind.ACCOUNT_MOVED) == 2 and ChangeKind.TERRITORY_DELETED in kinds
    assert ChangeKind.UNIT_MOVED in kinds and ChangeKind.RULE_CHANGED in kinds
    moved = changes.filter(kind=ChangeKind.ACCOUNT_MOVED).first()
    assert moved.territory_from is None and moved.payload["from_code"] == "W-T2"


def test_merge_refuses_mixing_leaves_and_parents_and_other_plans(world):
    v = version(world.plan)
    client = client_for(world.planner)
    leaf = world.leaves["W-T1"]
    response = client.post(
        f"/api/v1/territories/{leaf.pk}/merge/", {"into": world.east.pk, "version": v}, format="json"
    )
    assert response.status_code == 400 and "into" in response.json()["errors"]
    response = client.post(
        f"/api/v1/territories/{leaf.pk}/merge/", {"into": leaf.pk, "version": v}, format="json"
    )
    assert response.status_code == 400 and "itself" in response.json()["errors"]["into"][0]
    other = services.plan_clone(plan=world.plan, name="Other")
    foreign = Territory.objects.get(plan=other, code="W-T2")
    response = client.post(
        f"/api/v1/territories/{leaf.pk}/merge/", {"into": foreign.pk, "version": v}, format="json"
    )
    assert response.status_code == 400 and "into" in response.json()["errors"]
    assert version(world.plan) == v


def test_merging_districts_moves_their_children(world):
    east_d = Territory.objects.get(plan=world.plan, code="E-D1")
    west_d = Territory.objects.get(plan=world.plan, code="W-D1")
    result = services.territory_merge(
        territory=east_d, into=west_d, actor=world.planner, expected_version=version(world.plan)
    )
    assert result["moved_children"] == 2
    assert Territory.objects.get(plan=world.plan, code="E-T1").parent == west_d


def test_split_creates_a_sibling_with_the_chosen_accounts_and_units(world):
    plan = world.plan
    leaf = world.leaves["E-T1"]
    unit = GeoUnitFactory(geom=square(20, 20))
    assign_unit(plan, unit, leaf)
    placed, chosen = world.accounts["E-T1"]
    # `placed` came from the unit: it follows the unit to the new territory.
    AccountAssignment.objects.filter(plan=plan, account=placed).update(unit=unit, source="geography")
    v = version(plan)
    response = client_for(world.planner).post(
        f"/api/v1/territories/{leaf.pk}/split/",
        {"name": "East 1b", "code": "E-T1B", "account_ids": [chosen.pk], "unit_ids": [unit.pk], "version": v},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["moved_accounts"] == 2 and body["moved_units"] == 1 and body["version"] == v + 1
    new = Territory.objects.get(plan=plan, code="E-T1B")
    assert new.parent == leaf.parent and body["territory"]["id"] == new.pk
    assert owner(plan, chosen) == owner(plan, placed) == "E-T1B"
    changes = Change.objects.filter(plan=plan, plan_version=v + 1)
    assert sorted(c.kind for c in changes) == [
        ChangeKind.ACCOUNT_MOVED,
        ChangeKind.ACCOUNT_MOVED,
        ChangeKind.TERRITORY_CREATED,
        ChangeKind.UNIT_MOVED,
    ]


def test_split_names_accounts_the_territory_does_not_own(world):
    leaf = world.leaves["E-T1"]
    foreign = world.accounts["W-T1"][0]
    v = version(world.plan)
    response = client_for(world.planner).post(
        f"/api/v1/territories/{leaf.pk}/split/",
        {"name": "N", "code": "N", "account_ids": [foreign.pk], "version": v},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"]["account_ids"] == [f"not owned by E-T1: {foreign.pk}"]
    response = client_for(world.planner).post(
        f"/api/v1/territories/{leaf.pk}/split/", {"name": "N", "code": "N", "version": v}, format="json"
    )
    assert response.status_code == 400 and "account_ids" in response.json()["errors"]
    assert version(world.plan) == v and not Territory.objects.filter(code="N").exists()


# --- reps ----------------------------------------------------------------------------------------


def test_members_replace_the_reps_and_errors_name_the_row(world):
    leaf = world.leaves["W-T1"]
    extra = RepFactory(name="Overlay Olga")
    inactive = RepFactory(name="Gone", active=False)
    v = version(world.plan)
    client = client_for(world.planner)
    url = f"/api/v1/territories/{leaf.pk}/members/"
    bad = [
        {"rep": world.reps["W-T1"].pk, "role": "boss", "share": 1},
        {"rep": extra.pk, "role": "overlay", "share": 2},
        {"rep": inactive.pk},
        {"rep": 999999},
    ]
    response = client.put(url, {"members": bad, "version": v}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"members.0.role", "members.1.share", "members.2.rep", "members.3.rep"}
    assert "inactive" in errors["members.2.rep"][0]
    good = [
        {"rep": world.reps["W-T1"].pk, "role": "primary", "share": 1},
        {"rep": extra.pk, "role": "overlay", "share": 0.5},
    ]
    response = client.put(url, {"members": good, "version": v}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == v + 1
    assert {(m["name"], m["role"], m["share"]) for m in body["members"]} == {
        ("Rep W-T1", "primary", 1.0),
        ("Overlay Olga", "overlay", 0.5),
    }
    change = Change.objects.get(kind=ChangeKind.MEMBERSHIP_CHANGED)
    assert len(change.payload["before"]) == 1 and len(change.payload["after"]) == 2
    response = client.put(url, {"members": [], "version": v + 1}, format="json")
    assert response.status_code == 200 and response.json()["members"] == []
    assert not TerritoryMembership.objects.filter(territory=leaf).exists()


def test_rep_candidates_search_by_name(world):
    RepFactory(name="Zelda Searchable")
    response = client_for(world.planner).get("/api/v1/territories/rep-candidates/?search=zelda")
    assert [r["name"] for r in response.json()["results"]] == ["Zelda Searchable"]


# --- who may edit, and which plans ----------------------------------------------------------------


def test_only_planners_edit_and_others_see_only_their_scope(world):
    world.plan.status = PlanStatus.IN_REVIEW
    world.plan.save()
    leaf = world.leaves["W-T1"]
    v = version(world.plan)
    for user in (world.manager_west, world.rep_user, world.integration):
        response = client_for(user).patch(
            f"/api/v1/territories/{leaf.pk}/", {"name": "X", "version": v}, format="json"
        )
        assert response.status_code == 403, user
        assert response.json()["message"] == "Only planners and admins can edit territories."
    assert APIClient().get(f"/api/v1/territories/?plan={world.plan.pk}").status_code == 401
    # The manager of West reads West's territories only.
    codes = {
        t["code"]
        for t in client_for(world.manager_west)
        .get(f"/api/v1/territories/?plan={world.plan.pk}")
        .json()["results"]
    }
    assert codes == {"W", "W-D1", "W-T1", "W-T2"}
    assert (
        client_for(world.manager_west).get(f"/api/v1/territories/{world.leaves['E-T1'].pk}/").status_code
        == 404
    )
    assert client_for(world.outsider).get(f"/api/v1/territories/{leaf.pk}/").status_code == 404
    assert (
        client_for(world.admin)
        .patch(f"/api/v1/territories/{leaf.pk}/", {"name": "A", "version": v}, format="json")
        .status_code
        == 200
    )


def test_a_read_only_token_cannot_edit(world):
    _, key = api_token_create(user=world.planner, name="ro", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    leaf = world.leaves["W-T1"]
    response = client.patch(f"/api/v1/territories/{leaf.pk}/", {"name": "X", "version": 1}, format="json")
    assert response.status_code == 403 and "write" in response.json()["message"]


@pytest.mark.parametrize("status", [PlanStatus.APPROVED, PlanStatus.ARCHIVED])
def test_approved_and_archived_plans_are_read_only(world, status):
    Plan.objects.filter(pk=world.plan.pk).update(status=status)
    v = version(world.plan)
    response = client_for(world.planner).post(
        "/api/v1/territories/", {"plan": world.plan.pk, "name": "N", "code": "N", "version": v}, format="json"
    )
    assert response.status_code == 400
    assert "clone it" in response.json()["message"]
    assert not Territory.objects.filter(code="N").exists()


def test_services_are_atomic_when_a_late_step_fails(world, monkeypatch):
    """A failure after the first writes leaves nothing behind (no half merge)."""
    source, into = world.leaves["W-T2"], world.leaves["W-T1"]
    v = version(world.plan)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Change.objects, "bulk_create", boom)
    with pytest.raises(RuntimeError):
        services.territory_merge(territory=source, into=into, expected_version=v)
    assert Territory.objects.filter(pk=source.pk).exists() and version(world.plan) == v
    assert all(owner(world.plan, a) == "W-T2" for a in world.accounts["W-T2"])
    assert AssignmentRule.objects.count() == 0

"""plans/{id}/assignments/: the scoped, filtered, paginated list, and moves of accounts or
geography units (one batch of Changes, one new version, 409 on a stale version)."""

from __future__ import annotations

import pytest
from django.contrib.gis.geos import Point
from rest_framework.test import APIClient

from territories.choices import AssignmentSource, ChangeKind, PlanStatus
from territories.models import AccountAssignment, Change, Plan, UnitAssignment

from ..factories import AccountFactory, GeoUnitFactory, assign_unit, square

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def url(plan):
    return f"/api/v1/plans/{plan.pk}/assignments/"


def ids(response):
    assert response.status_code == 200, response.json()
    return sorted(row["account_id"] for row in response.json()["results"])


def assert_error_shape(response, status_code, field=None):
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"message", "errors"} and body["message"]
    if field is not None:
        assert field in body["errors"], body


def test_list_shape_and_filters(world):
    client = client_for(world.planner)
    response = client.get(url(world.plan))
    body = response.json()
    assert body["count"] == 8
    first = body["results"][0]
    account = world.accounts["E-T1"][0]
    assert first == {
        "account_id": account.pk,
        "account_external_id": account.external_id,
        "account_name": account.name,
        "territory_id": world.leaves["E-T1"].pk,
        "territory_code": "E-T1",
        "role": "primary",
        "source": "manual",
        "locked": False,
        "rule_id": None,
        "unit_id": None,
    }
    west = sorted(a.pk for code in ("W-T1", "W-T2") for a in world.accounts[code])
    assert ids(client.get(url(world.plan), {"territory": world.west.pk})) == west
    assert ids(client.get(url(world.plan), {"territory": world.leaves["W-T1"].pk})) == sorted(
        a.pk for a in world.accounts["W-T1"]
    )
    assert ids(client.get(url(world.plan), {"account": account.pk})) == [account.pk]
    assert ids(client.get(url(world.plan), {"external_id": account.external_id})) == [account.pk]
    assert ids(client.get(url(world.plan), {"source": "rule"})) == []
    AccountAssignment.objects.filter(account=account).update(locked=True)
    assert ids(client.get(url(world.plan), {"locked": "true"})) == [account.pk]
    assert ids(client.get(url(world.plan), {"territory": 999999})) == []
    assert_error_shape(client.get(url(world.plan), {"territory": "abc"}), 400, "territory")
    assert_error_shape(client.get(url(world.plan), {"source": "magic"}), 400, "source")
    assert client.get(url(world.plan), {"limit": 3}).json()["next"] is not None


def test_list_is_scoped(world):
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    west = sorted(a.pk for code in ("W-T1", "W-T2") for a in world.accounts[code])
    assert ids(client_for(world.manager_west).get(url(world.plan))) == west
    assert ids(client_for(world.rep_user).get(url(world.plan))) == sorted(
        a.pk for a in world.accounts["E-T1"]
    )
    assert client_for(world.outsider).get(url(world.plan)).status_code == 404
    assert APIClient().get(url(world.plan)).status_code == 401


def test_list_has_a_query_budget(world, django_assert_max_num_queries):
    for _ in range(60):
        account = AccountFactory()
        AccountAssignment.objects.create(
            plan=world.plan, account=account, territory=world.leaves["W-T2"], source=AssignmentSource.MANUAL
        )
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    for user in (world.planner, world.manager_west):
        client = client_for(user)
        with django_assert_max_num_queries(7):
            response = client.get(url(world.plan), {"limit": 100})
        assert len(response.json()["results"]) >= 60


# ------------------------------------------------------------------------------------------------
# account moves


def move(client, plan, **body):
    return client.post(url(plan), body, format="json")


def test_account_move_records_one_batch_and_bumps_the_version(world):
    client = client_for(world.planner)
    accounts = [a.pk for a in world.accounts["E-T1"]]
    target = world.leaves["W-T1"]
    response = move(client, world.plan, account_ids=accounts, territory=target.pk, lock=True, version=1)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["moved"] == 2 and body["version"] == 2
    changes = Change.objects.filter(batch=body["batch"])
    assert changes.count() == 2 and {c.kind for c in changes} == {ChangeKind.ACCOUNT_MOVED}
    assert {c.territory_from_id for c in changes} == {world.leaves["E-T1"].pk}
    rows = AccountAssignment.objects.filter(plan=world.plan, account_id__in=accounts)
    assert {(r.territory_id, r.locked, r.source) for r in rows} == {(target.pk, True, "manual")}

    # The same move again with the old version: 409 and nothing is written.
    again = move(client, world.plan, account_ids=accounts, territory=world.leaves["W-T2"].pk, version=1)
    assert_error_shape(again, 409, "version")
    assert AccountAssignment.objects.filter(plan=world.plan, territory=target).count() == 4
    # If-Match works too.
    response = client.post(
        url(world.plan),
        {"account_ids": accounts, "territory": world.leaves["W-T2"].pk},
        format="json",
        HTTP_IF_MATCH='"2"',
    )
    assert response.status_code == 200 and response.json()["version"] == 3


def test_account_move_refusals(world):
    client = client_for(world.planner)
    account = world.accounts["E-T1"][0].pk
    leaf = world.leaves["W-T1"].pk
    assert_error_shape(move(client, world.plan, account_ids=[account], territory=leaf), 400, "version")
    assert_error_shape(
        move(client, world.plan, account_ids=[account], territory=world.west.pk, version=1), 400, "territory"
    )
    assert_error_shape(
        move(client, world.plan, account_ids=[account], territory=999999, version=1), 400, "territory"
    )
    assert_error_shape(
        move(client, world.plan, account_ids=[account], unit_ids=[1], territory=leaf, version=1),
        400,
        "account_ids",
    )
    assert_error_shape(move(client, world.plan, territory=leaf, version=1), 400, "account_ids")
    assert_error_shape(
        move(client, world.plan, account_ids=[], territory=leaf, version=1), 400, "account_ids"
    )
    assert_error_shape(
        move(client, world.plan, account_ids=["x"], territory=leaf, version=1), 400, "account_ids"
    )
    assert_error_shape(
        move(client, world.plan, account_ids=[999999], territory=leaf, version=1), 400, "account_ids"
    )
    assert_error_shape(
        move(client, world.plan, account_ids=[account], territory=leaf, lock="maybe", version=1), 400
    )
    response = client.post(url(world.plan), "not json", content_type="application/json")
    assert_error_shape(response, 400)
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    response = move(
        client_for(world.manager_west), world.plan, account_ids=[account], territory=leaf, version=1
    )
    assert_error_shape(response, 403)
    world.plan.refresh_from_db()
    assert world.plan.version == 1
    assert (
        AccountAssignment.objects.get(plan=world.plan, account_id=account).territory == world.leaves["E-T1"]
    )


# ------------------------------------------------------------------------------------------------
# unit moves


def test_unit_move_takes_its_accounts_along_in_one_batch(world):
    west_unit = GeoUnitFactory(geom=square(10, 10))
    east_unit = GeoUnitFactory(geom=square(0, 0))
    assign_unit(world.plan, west_unit, world.leaves["W-T1"])
    assign_unit(world.plan, east_unit, world.leaves["E-T1"])
    inside = AccountFactory(location=Point(10.5, 10.5, srid=4326))
    locked = AccountFactory(location=Point(10.2, 10.2, srid=4326))
    AccountAssignment.objects.create(
        plan=world.plan, account=locked, territory=world.leaves["W-T2"], source="manual", locked=True
    )
    # The world's accounts are manual and unlocked at (0.5, 0.5): a rebuild gives them to east_unit's owner.
    client = client_for(world.planner)
    response = move(client, world.plan, unit_ids=[west_unit.pk], territory=world.leaves["E-T2"].pk, version=1)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["moved"] == 1 and body["version"] == 2
    ua = UnitAssignment.objects.get(plan=world.plan, unit=west_unit)
    assert ua.territory == world.leaves["E-T2"] and ua.source == "manual" and ua.locked is False
    owner = AccountAssignment.objects.get(plan=world.plan, account=inside)
    assert owner.territory == world.leaves["E-T2"] and owner.source == "geography"
    assert AccountAssignment.objects.get(plan=world.plan, account=locked).territory == world.leaves["W-T2"]
    batch = Change.objects.filter(batch=body["batch"])
    kinds = {c.kind for c in batch}
    assert ChangeKind.UNIT_MOVED in kinds and ChangeKind.PLAN_MATERIALIZED in kinds
    assert {c.plan_version for c in batch} == {2}
    unit_change = batch.get(kind=ChangeKind.UNIT_MOVED)
    assert (unit_change.territory_from_id, unit_change.territory_to_id) == (
        world.leaves["W-T1"].pk,
        world.leaves["E-T2"].pk,
    )
    # Moving it where it already is changes nothing and keeps the version.
    again = move(client, world.plan, unit_ids=[west_unit.pk], territory=world.leaves["E-T2"].pk, version=2)
    assert again.json() == {"moved": 0, "accounts_moved": 0, "batch": None, "version": 2}
    # Locking it is a lock change.
    locking = move(
        client, world.plan, unit_ids=[west_unit.pk], territory=world.leaves["E-T2"].pk, lock=True, version=2
    )
    assert locking.json()["moved"] == 1
    assert Change.objects.filter(
        batch=locking.json()["batch"], kind=ChangeKind.LOCK_CHANGED, unit=west_unit
    ).exists()


def test_unit_move_refusals(world):
    client = client_for(world.planner)
    unit = GeoUnitFactory()
    assert_error_shape(
        move(client, world.plan, unit_ids=[unit.pk, 999999], territory=world.leaves["W-T1"].pk, version=1),
        400,
        "unit_ids",
    )
    assert_error_shape(move(client, world.plan, unit_ids=[unit.pk], territory=world.west.pk, version=1), 400)
    assert_error_shape(
        move(client, world.plan, unit_ids=[unit.pk], territory=world.leaves["W-T1"].pk, version=7), 409
    )
    assert not UnitAssignment.objects.filter(plan=world.plan).exists()

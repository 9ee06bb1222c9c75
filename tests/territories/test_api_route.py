"""route/ and route/batch/: a lead or known account → territory, path, reps (primary first), the
resolver step and a one-line explanation, from the plan in effect on `at`. Writes nothing; needs the
token scope `route`."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.gis.geos import Point
from rest_framework.test import APIClient

from accounts.models import PostalCode
from accounts.services import api_token_create
from territories import services
from territories.choices import PlanStatus
from territories.models import AccountAssignment, Change

from ..factories import AccountFactory, GeoUnitFactory, RepFactory, add_member, assign_unit, square

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def token_client(user, scopes) -> APIClient:
    _, key = api_token_create(user=user, name="crm", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def assert_error_shape(response, status_code, field=None):
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"message", "errors"} and body["message"]
    if field is not None:
        assert field in body["errors"], body


@pytest.fixture
def routed(world):
    """The world plan published from 2026-01-01, with West 1 owning a county square at (10, 10),
    East 1 one at (0, 0), and a postal code centred in West 1's county."""
    assign_unit(
        world.plan, GeoUnitFactory(code="90001", name="Tenland", geom=square(10, 10)), world.leaves["W-T1"]
    )
    assign_unit(
        world.plan, GeoUnitFactory(code="90002", name="Zeroland", geom=square(0, 0)), world.leaves["E-T1"]
    )
    PostalCode.objects.create(code="02134", location=Point(10.5, 10.5, srid=4326), city="Ten", state="MA")
    add_member(world.leaves["W-T1"], RepFactory(name="Aaron Overlay"), role="overlay", share="0.5")
    plan = services.plan_transition(plan=world.plan, status=PlanStatus.IN_REVIEW)
    plan = services.plan_transition(plan=plan, status=PlanStatus.APPROVED)
    services.plan_publish(plan=plan, effective_from=dt.date(2026, 1, 1))
    world.plan.refresh_from_db()
    return world


def route(client, **body):
    return client.post("/api/v1/route/", body, format="json")


def test_a_lead_is_routed_by_its_location(routed):
    response = route(client_for(routed.integration), name="New Co", latitude=10.5, longitude=10.5)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["territory"] == {"id": routed.leaves["W-T1"].pk, "code": "W-T1", "name": "West 1"}
    assert body["path"] == ["West", "West D1", "West 1"] and body["path_codes"] == ["W", "W-D1", "W-T1"]
    assert [r["name"] for r in body["reps"]] == ["Rep W-T1", "Aaron Overlay"]  # primary first
    assert body["reps"][0]["role"] == "primary" and body["reps"][1]["role"] == "overlay"
    assert body["step"] == "geography" and body["unit"]["code"] == "90001" and body["rule"] is None
    assert "Tenland" in body["explanation"] and "W-T1" in body["explanation"]
    assert body["plan"]["id"] == routed.plan.pk and body["account"] is None
    assert body["location"] == {"longitude": 10.5, "latitude": 10.5, "source": "given"}


def test_a_lead_is_located_by_its_postal_code(routed):
    body = route(client_for(routed.integration), name="Zip Co", postal_code="2134").json()
    assert body["territory"]["code"] == "W-T1" and body["location"]["source"] == "postal_code"
    body = route(client_for(routed.integration), name="Nowhere Co", postal_code="99999").json()
    assert (
        body["territory"] is None
        and body["step"] == "unassigned"
        and body["reps"] == []
        and body["path"] == []
    )
    assert "no location" in body["explanation"]


def test_rules_decide_before_geography(routed):
    services.rule_create(
        plan=routed.plan,
        territory=routed.leaves["E-T2"],
        name="Big healthcare",
        priority=10,
        conditions=[
            {"field": "industry", "op": "eq", "value": "Healthcare"},
            {"field": "revenue", "op": "gte", "value": 1000000},
        ],
    )
    client = client_for(routed.integration)
    body = route(client, industry="healthcare", revenue="2000000", latitude=10.5, longitude=10.5).json()
    assert body["territory"]["code"] == "E-T2" and body["step"] == "rule"
    assert body["rule"]["name"] == "Big healthcare" and "Big healthcare" in body["explanation"]
    small = route(client, industry="Healthcare", revenue=10, latitude=10.5, longitude=10.5).json()
    assert small["territory"]["code"] == "W-T1" and small["step"] == "geography"


def test_a_known_account_is_answered_from_its_assignment(routed):
    account = routed.accounts["E-T2"][0]
    body = route(client_for(routed.integration), external_id=account.external_id).json()
    # A manual assignment the resolver would not reproduce (its location lies in Zeroland → E-T1).
    assert body["territory"]["code"] == "E-T2" and body["step"] == "manual"
    assert "by hand" in body["explanation"] and "E-T1" in body["explanation"]
    assert body["account"] == {"id": account.pk, "external_id": account.external_id, "name": account.name}
    AccountAssignment.objects.filter(plan=routed.plan, account=account).update(locked=True)
    body = route(client_for(routed.integration), external_id=account.external_id).json()
    assert body["step"] == "locked" and body["locked"] is True
    # An account imported after the plan was built: the resolver's answer.
    fresh = AccountFactory(location=Point(10.5, 10.5, srid=4326))
    body = route(client_for(routed.integration), external_id=fresh.external_id).json()
    assert body["territory"]["code"] == "W-T1" and body["step"] == "geography"
    # An unknown external id is a new lead, routed by the facts sent.
    body = route(client_for(routed.integration), external_id="CRM-NEW-1", latitude=0.5, longitude=0.5).json()
    assert body["territory"]["code"] == "E-T1" and body["account"] is None


def test_a_lead_with_a_parent_follows_it(routed):
    parent = routed.accounts["W-T2"][0]
    body = route(client_for(routed.integration), name="Sub", parent_external_id=parent.external_id).json()
    assert body["territory"]["code"] == "W-T2" and body["step"] == "parent"
    assert_error_shape(
        route(client_for(routed.integration), name="Sub", parent_external_id="NOPE"),
        400,
        "parent_external_id",
    )


def test_routing_on_a_date_uses_the_plan_in_effect_then(routed):
    client = client_for(routed.integration)
    assert_error_shape(route(client, name="Old", latitude=10.5, longitude=10.5, at="2025-06-01"), 400, "at")
    body = route(client, name="New", latitude=10.5, longitude=10.5, at="2026-03-01").json()
    assert body["plan"]["id"] == routed.plan.pk and body["at"] == "2026-03-01"


def test_bad_leads_get_400_naming_the_field(routed):
    client = client_for(routed.integration)
    assert_error_shape(route(client), 400, "external_id")
    assert_error_shape(route(client, latitude=10), 400, "longitude")
    assert_error_shape(route(client, latitude=100, longitude=0), 400, "latitude")
    assert_error_shape(route(client, name="x", segment="galactic"), 400, "segment")
    assert_error_shape(route(client, name="x", revenue="lots"), 400, "revenue")
    assert_error_shape(route(client, name="x", revenue=-1), 400, "revenue")
    assert_error_shape(route(client, name="x", at="yesterday"), 400, "at")
    assert_error_shape(route(client, name="x", attributes=[1]), 400, "attributes")
    assert_error_shape(client.post("/api/v1/route/", "[]", content_type="application/json"), 400)


def test_routing_writes_nothing_and_needs_the_route_scope(routed):
    changes, assignments = Change.objects.count(), AccountAssignment.objects.count()
    assert (
        route(
            token_client(routed.integration, ["route"]), name="A", latitude=10.5, longitude=10.5
        ).status_code
        == 200
    )
    assert (Change.objects.count(), AccountAssignment.objects.count()) == (changes, assignments)
    response = route(token_client(routed.integration, ["read", "write"]), name="A", latitude=1, longitude=1)
    assert_error_shape(response, 403)
    assert "route" in response.json()["message"]
    assert APIClient().post("/api/v1/route/", {"name": "A"}, format="json").status_code == 401


def test_batch_answers_in_order(routed):
    leads = [
        {"name": "In ten", "latitude": 10.5, "longitude": 10.5},
        {"external_id": routed.accounts["E-T2"][1].external_id},
        {"name": "Zero", "postal_code": "02134"},
        {"name": "Far", "latitude": -40, "longitude": 170},
    ]
    response = client_for(routed.integration).post("/api/v1/route/batch/", {"leads": leads}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["plan"]["id"] == routed.plan.pk
    assert [r["territory"] and r["territory"]["code"] for r in body["results"]] == [
        "W-T1",
        "E-T2",
        "W-T1",
        None,
    ]


def test_batch_limits_and_row_errors(routed):
    client = client_for(routed.integration)
    too_many = {"leads": [{"name": f"L{i}"} for i in range(1001)]}
    assert_error_shape(client.post("/api/v1/route/batch/", too_many, format="json"), 400, "leads")
    assert_error_shape(client.post("/api/v1/route/batch/", {"leads": []}, format="json"), 400, "leads")
    response = client.post(
        "/api/v1/route/batch/", {"leads": [{"name": "ok"}, {"latitude": 5}]}, format="json"
    )
    assert_error_shape(response, 400, "leads")
    assert "longitude" in str(response.json()["errors"]["leads"])
    response = client.post(
        "/api/v1/route/batch/",
        {"leads": [{"name": "ok"}, {"name": "x", "parent_external_id": "NOPE"}]},
        format="json",
    )
    assert_error_shape(response, 400, "leads.1.parent_external_id")


def test_batch_query_count_does_not_grow_with_new_leads(routed, django_assert_max_num_queries):
    client = client_for(routed.integration)
    leads = [{"name": f"L{i}", "latitude": 10.5, "longitude": 10.5 + i / 100} for i in range(40)]
    leads += [{"name": f"Z{i}", "postal_code": "02134"} for i in range(20)]
    # The geography step of the resolver runs for the whole batch in one query.
    with django_assert_max_num_queries(12):
        response = client.post("/api/v1/route/batch/", {"leads": leads}, format="json")
    assert response.status_code == 200
    assert {r["territory"]["code"] for r in response.json()["results"]} == {"W-T1"}


def test_batch_and_single_routing_agree(routed):
    """containing_units (the batch) and the resolver's one-location lookup pick the same unit."""
    state = GeoUnitFactory(level="state", code="90", name="Tenstate", geom=square(9, 9, 4))
    assign_unit(routed.plan, state, routed.leaves["E-T2"])
    client = client_for(routed.integration)
    leads = [
        {"name": "county wins over state", "latitude": 10.5, "longitude": 10.5},
        {"name": "state only", "latitude": 12.5, "longitude": 12.5},
        {"name": "on the county edge", "latitude": 11.0, "longitude": 10.5},
        {"name": "nowhere", "latitude": -50, "longitude": -50},
        {"name": "no location"},
        {"name": "zero", "latitude": 0.5, "longitude": 0.5},
        {"external_id": routed.accounts["E-T1"][0].external_id},
    ]
    batch = client.post("/api/v1/route/batch/", {"leads": leads}, format="json").json()["results"]
    single = [route(client, **lead).json() for lead in leads]
    keys = ("territory", "step", "unit", "rule", "explanation", "reps", "path")
    assert [{k: r[k] for k in keys} for r in batch] == [{k: r[k] for k in keys} for r in single]
    assert [r["unit"] and r["unit"]["code"] for r in batch[:4]] == ["90001", "90", "90001", None]


def test_accounts_outside_the_users_scope_are_routed_as_leads(routed):
    other = routed.accounts["W-T2"][0]
    own = routed.accounts["E-T1"][0]
    client = client_for(routed.rep_user)
    body = route(client, external_id=other.external_id, latitude=0.5, longitude=0.5).json()
    assert body["account"] is None and body["territory"]["code"] == "E-T1"
    body = route(client, external_id=own.external_id).json()
    assert body["account"]["id"] == own.pk


def test_a_rule_added_after_routing_applies_at_once(routed):
    client = client_for(routed.integration)
    lead = {"industry": "Energy", "latitude": 10.5, "longitude": 10.5}
    assert route(client, **lead).json()["step"] == "geography"  # compiles and keeps the rules
    services.rule_create(
        plan=routed.plan,
        territory=routed.leaves["E-T1"],
        name="Energy",
        conditions=[{"field": "industry", "op": "eq", "value": "Energy"}],
    )
    body = route(client, **lead).json()
    assert body["step"] == "rule" and body["territory"]["code"] == "E-T1"

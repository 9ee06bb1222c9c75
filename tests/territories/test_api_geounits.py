"""geounits/: geography units as GeoJSON by level and bounding box, optionally with each unit's
territory in a plan (scoped)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from territories.choices import PlanStatus, UnitLevel
from territories.models import Plan

from ..factories import GeoUnitFactory, assign_unit, square

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def codes(response):
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["type"] == "FeatureCollection"
    return [f["properties"]["code"] for f in body["features"]]


def assert_error_shape(response, status_code, field=None):
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"message", "errors"} and body["message"]
    if field is not None:
        assert field in body["errors"], body


@pytest.fixture
def units(world):
    state = GeoUnitFactory(level=UnitLevel.STATE, code="98", name="Squares", geom=square(0, 0, 3))
    made = {
        "98001": GeoUnitFactory(code="98001", name="Left", parent=state, geom=square(0, 0)),
        "98002": GeoUnitFactory(code="98002", name="Middle", parent=state, geom=square(1, 0)),
        "98003": GeoUnitFactory(code="98003", name="Far", parent=state, geom=square(20, 20)),
    }
    assign_unit(world.plan, made["98001"], world.leaves["E-T1"])
    assign_unit(world.plan, made["98002"], world.leaves["W-T1"])
    return world, state, made


def test_units_by_level_and_bounding_box(units):
    world, state, made = units
    client = client_for(world.rep_user)
    assert codes(client.get("/api/v1/geounits/", {"level": "county"})) == ["98001", "98002", "98003"]
    assert codes(client.get("/api/v1/geounits/", {"level": "state"})) == ["98"]
    assert codes(client.get("/api/v1/geounits/", {"level": "county", "in_bbox": "0.2,0.2,0.8,0.8"})) == [
        "98001"
    ]
    assert codes(client.get("/api/v1/geounits/", {"in_bbox": "19,19,30,30"})) == ["98003"]
    feature = client.get("/api/v1/geounits/", {"code": "98002"}).json()["features"][0]
    assert feature["geometry"]["type"] == "MultiPolygon" and feature["id"] == made["98002"].pk
    assert feature["properties"]["name"] == "Middle" and feature["properties"]["parent_id"] == state.pk
    assert "territory" not in feature["properties"]


def test_limit_truncates_and_says_so(units):
    world = units[0]
    body = client_for(world.planner).get("/api/v1/geounits/", {"level": "county", "limit": 2}).json()
    assert len(body["features"]) == 2 and body["truncated"] is True
    assert client_for(world.planner).get("/api/v1/geounits/", {"limit": 10}).json()["truncated"] is False


def test_units_with_their_territory_in_a_plan_are_scoped(units):
    world, _, made = units
    body = (
        client_for(world.planner).get("/api/v1/geounits/", {"level": "county", "plan": world.plan.pk}).json()
    )
    owners = {f["properties"]["code"]: f["properties"]["territory"] for f in body["features"]}
    assert owners["98001"]["code"] == "E-T1" and owners["98002"]["code"] == "W-T1" and owners["98003"] is None
    assert owners["98001"]["locked"] is False and owners["98001"]["color"].startswith("#")
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    body = (
        client_for(world.manager_west)
        .get("/api/v1/geounits/", {"plan": world.plan.pk, "level": "county"})
        .json()
    )
    owners = {f["properties"]["code"]: f["properties"]["territory"] for f in body["features"]}
    assert owners["98001"] is None and owners["98002"]["code"] == "W-T1"
    assert_error_shape(
        client_for(world.outsider).get("/api/v1/geounits/", {"plan": world.plan.pk}), 400, "plan"
    )


@pytest.mark.parametrize(
    "params, field",
    [
        ({"level": "galaxy"}, "level"),
        ({"in_bbox": "1,2,3"}, "in_bbox"),
        ({"in_bbox": "a,b,c,d"}, "in_bbox"),
        ({"in_bbox": "nan,0,1,1"}, "in_bbox"),
        ({"in_bbox": "5,5,1,1"}, "in_bbox"),
        ({"in_bbox": "-200,0,1,1"}, "in_bbox"),
        ({"limit": 0}, "limit"),
        ({"limit": 100000}, "limit"),
        ({"plan": "x"}, "plan"),
    ],
)
def test_bad_parameters_are_400(units, params, field):
    assert_error_shape(client_for(units[0].planner).get("/api/v1/geounits/", params), 400, field)


def test_query_budget(units, django_assert_max_num_queries):
    world = units[0]
    for i in range(20):
        GeoUnitFactory(code=f"97{i:03d}", geom=square(i, 5))
    client = client_for(world.planner)
    with django_assert_max_num_queries(4):
        response = client.get("/api/v1/geounits/", {"plan": world.plan.pk})
    assert len(response.json()["features"]) == 24
    assert APIClient().get("/api/v1/geounits/").status_code == 401

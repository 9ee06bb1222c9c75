"""plans/: list, create, retrieve, update with optimistic locking (body `version` or If-Match),
clone, transition, publish, metrics, the territory layer as GeoJSON and diff; scoped to the user."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_create
from territories import services
from territories.choices import ChangeKind, PlanStatus, UnitLevel
from territories.models import Change, Plan

from ..factories import AccountFactory, GeoUnitFactory, PlanFactory, add_member, assign_unit, square

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def token_client(user, scopes) -> APIClient:
    _, key = api_token_create(user=user, name="t", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def url(plan, suffix=""):
    return f"/api/v1/plans/{plan.pk}/{suffix}"


def publish(plan, on: dt.date, actor=None) -> Plan:
    plan = services.plan_transition(plan=plan, status=PlanStatus.IN_REVIEW, actor=actor)
    plan = services.plan_transition(plan=plan, status=PlanStatus.APPROVED, actor=actor)
    return services.plan_publish(plan=plan, effective_from=on, actor=actor)


def assert_error_shape(response, status_code, field=None):
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"message", "errors"} and body["message"]
    if field is not None:
        assert field in body["errors"], body


# ------------------------------------------------------------------------------------------------
# list / retrieve / scope


def test_planners_see_every_plan_and_managers_only_non_drafts_they_have_a_place_in(world):
    other = PlanFactory(name="Someone else's plan", status=PlanStatus.IN_REVIEW)
    listed = client_for(world.planner).get("/api/v1/plans/").json()
    assert {p["id"] for p in listed["results"]} == {world.plan.pk, other.pk}
    # The world plan is a draft: managers and reps do not see drafts.
    assert client_for(world.manager_west).get("/api/v1/plans/").json()["results"] == []
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    for user in (world.manager_west, world.rep_user):
        ids = [p["id"] for p in client_for(user).get("/api/v1/plans/").json()["results"]]
        assert ids == [world.plan.pk]
    assert client_for(world.outsider).get("/api/v1/plans/").json()["results"] == []
    assert client_for(world.outsider).get(url(world.plan)).status_code == 404
    assert APIClient().get("/api/v1/plans/").status_code == 401


def test_retrieve_carries_the_version_as_etag_and_filters_work(world):
    response = client_for(world.planner).get(url(world.plan))
    assert response.status_code == 200
    assert response.json()["version"] == world.plan.version and response["ETag"] == f'"{world.plan.version}"'
    assert client_for(world.planner).get("/api/v1/plans/abc/").status_code == 404
    listed = client_for(world.planner).get("/api/v1/plans/?status=active").json()
    assert listed["results"] == []
    assert_error_shape(client_for(world.planner).get("/api/v1/plans/?status=nope"), 400, "status")


def test_plan_list_has_a_query_budget(world, django_assert_max_num_queries):
    for i in range(15):
        services.plan_clone(plan=world.plan, name=f"Scenario {i}", actor=world.planner)
    client = client_for(world.planner)
    with django_assert_max_num_queries(4):
        response = client.get("/api/v1/plans/?limit=50")
    assert response.json()["count"] == 16


# ------------------------------------------------------------------------------------------------
# create / update


def test_planner_creates_a_plan_and_others_may_not(world):
    response = client_for(world.planner).post("/api/v1/plans/", {"name": " FY27 "}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "FY27" and body["status"] == "draft" and body["owner"] == "planner"
    assert Change.objects.filter(plan_id=body["id"], kind=ChangeKind.PLAN_CREATED).exists()
    assert_error_shape(
        client_for(world.planner).post("/api/v1/plans/", {"name": ""}, format="json"), 400, "name"
    )
    for user in (world.manager_west, world.rep_user, world.integration):
        assert_error_shape(client_for(user).post("/api/v1/plans/", {"name": "x"}, format="json"), 403)
    read_only = token_client(world.planner, ["read"])
    assert_error_shape(read_only.post("/api/v1/plans/", {"name": "x"}, format="json"), 403)
    assert (
        token_client(world.planner, ["write"])
        .post("/api/v1/plans/", {"name": "x"}, format="json")
        .status_code
        == 201
    )


def test_update_needs_the_current_version_in_the_body_or_if_match(world):
    client = client_for(world.planner)
    v = world.plan.version
    response = client.patch(url(world.plan), {"name": "Renamed", "version": v}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Renamed" and response.json()["version"] == v + 1
    assert response["ETag"] == f'"{v + 1}"'
    change = Change.objects.filter(plan=world.plan).latest("id")
    assert change.payload["edited"]["name"] == {"from": "World plan", "to": "Renamed"}

    # Stale in the body, then stale in If-Match: 409, nothing changes.
    stale = client.patch(url(world.plan), {"name": "Lost edit", "version": v}, format="json")
    assert_error_shape(stale, 409, "version")
    stale = client.patch(url(world.plan), {"description": "Lost"}, format="json", HTTP_IF_MATCH=f'"{v}"')
    assert_error_shape(stale, 409, "version")
    world.plan.refresh_from_db()
    assert (world.plan.name, world.plan.description, world.plan.version) == ("Renamed", "", v + 1)

    ok = client.patch(url(world.plan), {"description": "Why"}, format="json", HTTP_IF_MATCH=f'W/"{v + 1}"')
    assert ok.status_code == 200 and ok.json()["description"] == "Why"

    assert_error_shape(client.patch(url(world.plan), {"name": "x"}, format="json"), 400, "version")
    assert_error_shape(
        client.patch(url(world.plan), {"name": "x"}, format="json", HTTP_IF_MATCH="latest"), 400, "If-Match"
    )
    assert_error_shape(
        client.patch(url(world.plan), {"name": "x", "version": 1}, format="json", HTTP_IF_MATCH='"2"'),
        400,
        "version",
    )
    assert_error_shape(client.patch(url(world.plan), {"version": "seven"}, format="json"), 400, "version")


def test_put_replaces_name_and_description(world):
    client = client_for(world.planner)
    Plan.objects.filter(pk=world.plan.pk).update(description="old")
    assert_error_shape(client.put(url(world.plan), {"version": 1}, format="json"), 400, "name")
    response = client.put(url(world.plan), {"name": "New", "version": 1}, format="json")
    assert response.status_code == 200 and response.json()["description"] == ""


def test_managers_cannot_update_and_archived_plans_refuse(world):
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    response = client_for(world.manager_west).patch(
        url(world.plan), {"name": "x", "version": 1}, format="json"
    )
    assert_error_shape(response, 403)
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.ARCHIVED)
    response = client_for(world.planner).patch(url(world.plan), {"name": "x", "version": 1}, format="json")
    assert_error_shape(response, 400)
    assert "archived" in response.json()["message"]


# ------------------------------------------------------------------------------------------------
# clone / transition / publish


def test_clone_transition_and_publish(world):
    client = client_for(world.planner)
    response = client.post(url(world.plan, "clone/"), {"name": "Scenario B"}, format="json")
    assert response.status_code == 201
    clone = Plan.objects.get(pk=response.json()["id"])
    assert clone.based_on == world.plan and response.json()["based_on_name"] == "World plan"
    assert clone.territories.count() == world.plan.territories.count()
    assert_error_shape(client.post(url(world.plan, "clone/"), {}, format="json"), 400, "name")

    v = clone.version
    response = client.post(url(clone, "transition/"), {"status": "in_review", "version": v}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "in_review"
    assert_error_shape(
        client.post(url(clone, "transition/"), {"status": "approved", "version": v}, format="json"), 409
    )
    assert_error_shape(
        client.post(url(clone, "transition/"), {"status": "active", "version": v + 1}, format="json"),
        400,
        "status",
    )
    response = client.post(
        url(clone, "transition/"), {"status": "approved"}, format="json", HTTP_IF_MATCH=str(v + 1)
    )
    assert response.status_code == 200 and response.json()["status"] == "approved"

    v = response.json()["version"]
    assert_error_shape(
        client.post(url(clone, "publish/"), {"effective_from": "soon", "version": v}, format="json"),
        400,
        "effective_from",
    )
    assert_error_shape(
        client.post(
            url(clone, "publish/"), {"effective_from": "2026-01-01", "version": v - 1}, format="json"
        ),
        409,
    )
    response = client.post(
        url(clone, "publish/"), {"effective_from": "2026-01-01", "version": v}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "active" and response.json()["effective_from"] == "2026-01-01"
    # A draft cannot be published.
    draft = services.plan_clone(plan=world.plan, name="Draft", actor=world.planner)
    response = client.post(
        url(draft, "publish/"), {"effective_from": "2027-01-01", "version": 1}, format="json"
    )
    assert_error_shape(response, 400, "status")
    assert_error_shape(
        client_for(world.manager_west).post(url(clone, "clone/"), {"name": "x"}, format="json"), 403
    )


# ------------------------------------------------------------------------------------------------
# metrics


def by_code(rows):
    return {row["code"]: row for row in rows}


def test_metrics_totals_targets_and_deviation(world):
    world.accounts["W-T1"][0].revenue = 5000
    world.accounts["W-T1"][0].save()
    unassigned = AccountFactory(revenue=700)
    rep = world.reps["W-T2"]
    rep.capacity_fte = 2
    rep.save()
    body = client_for(world.planner).get(url(world.plan, "metrics/")).json()
    assert body["plan"] == {"id": world.plan.pk, "name": "World plan", "status": "draft", "version": 1}
    assert body["metric_names"] == ["accounts", "revenue", "potential", "workload"]
    assert body["tolerance"] == 0.05
    assert body["totals"]["accounts"] == 8 and body["totals"]["revenue"] == 12000
    assert body["unassigned"] == {"accounts": 1, "revenue": 700.0, "potential": 5000.0, "workload": 10.0}
    rows = by_code(body["territories"])
    assert [r["code"] for r in body["territories"]] == [
        "E",
        "E-D1",
        "E-T1",
        "E-T2",
        "W",
        "W-D1",
        "W-T1",
        "W-T2",
    ]
    leaf = rows["W-T1"]
    assert leaf["path"] == ["West", "West D1", "West 1"] and leaf["path_codes"] == ["W", "W-D1", "W-T1"]
    assert leaf["is_leaf"] and leaf["reps"][0]["name"] == "Rep W-T1" and leaf["reps"][0]["role"] == "primary"
    assert leaf["metrics"]["revenue"] == 6000.0 and leaf["metrics"]["accounts"] == 2
    # Capacities 1, 1, 1, 2: W-T2 deserves 2/5 of the total, the others 1/5.
    assert leaf["target"]["accounts"] == pytest.approx(8 / 5)
    assert rows["W-T2"]["target"]["accounts"] == pytest.approx(16 / 5)
    assert leaf["deviation"]["accounts"] == pytest.approx(0.25)
    assert leaf["outside_tolerance"] is True
    assert rows["W"]["metrics"]["accounts"] == 4 and rows["W"]["target"]["accounts"] == pytest.approx(24 / 5)
    assert rows["W"]["manager"] == {"id": world.manager_west.pk, "username": "manager.west"}
    assert rows["W"]["contiguous"] is None and leaf["units"] == 0 and leaf["locked_accounts"] == 0
    assert unassigned.pk


def test_metrics_are_scoped_to_the_managers_subtree(world):
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    body = client_for(world.manager_west).get(url(world.plan, "metrics/")).json()
    assert {r["code"] for r in body["territories"]} == {"W", "W-D1", "W-T1", "W-T2"}
    assert body["totals"]["accounts"] == 4 and body["unassigned"] is None
    assert by_code(body["territories"])["W-T1"]["target"]["accounts"] == pytest.approx(2)
    rep_body = client_for(world.rep_user).get(url(world.plan, "metrics/")).json()
    assert [r["code"] for r in rep_body["territories"]] == ["E-T1"]
    assert client_for(world.outsider).get(url(world.plan, "metrics/")).status_code == 404


def test_metrics_report_contiguity_of_units(world):
    a = GeoUnitFactory(level=UnitLevel.COUNTY, geom=square(0, 0))
    b = GeoUnitFactory(level=UnitLevel.COUNTY, geom=square(1, 0))
    c = GeoUnitFactory(level=UnitLevel.COUNTY, geom=square(5, 0))
    a.adjacent.add(b)
    assign_unit(world.plan, a, world.leaves["E-T1"])
    assign_unit(world.plan, b, world.leaves["E-T1"])
    assign_unit(world.plan, c, world.leaves["E-T2"])
    rows = by_code(client_for(world.planner).get(url(world.plan, "metrics/")).json()["territories"])
    assert rows["E-T1"]["contiguous"] is True and rows["E-T1"]["units"] == 2
    assert rows["E-T2"]["contiguous"] is True
    assert rows["E"]["contiguous"] is False and rows["E"]["units"] == 3
    assign_unit(world.plan, GeoUnitFactory(level=UnitLevel.COUNTY, geom=square(9, 9)), world.leaves["W-T1"])
    assign_unit(world.plan, GeoUnitFactory(level=UnitLevel.COUNTY, geom=square(7, 9)), world.leaves["W-T1"])
    rows = by_code(client_for(world.planner).get(url(world.plan, "metrics/")).json()["territories"])
    assert rows["W-T1"]["contiguous"] is False


def test_metrics_query_budget_does_not_grow_with_territories(world, django_assert_max_num_queries):
    from ..factories import RepFactory, TerritoryFactory

    for i in range(30):
        leaf = TerritoryFactory(plan=world.plan, parent=world.leaves["E-T1"].parent, code=f"E-X{i}")
        add_member(leaf, RepFactory())
    client = client_for(world.planner)
    with django_assert_max_num_queries(10):
        assert client.get(url(world.plan, "metrics/")).status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get(url(world.plan, "territories/")).status_code == 200


# ------------------------------------------------------------------------------------------------
# territories GeoJSON


def test_territories_geojson_unions_units_or_hulls_accounts(world):
    from django.contrib.gis.geos import Point

    assign_unit(world.plan, GeoUnitFactory(geom=square(0, 0)), world.leaves["E-T1"])
    assign_unit(world.plan, GeoUnitFactory(geom=square(1, 0)), world.leaves["E-T1"])
    for account, (x, y) in zip(world.accounts["W-T1"], [(10, 10), (12, 11)], strict=True):
        account.location = Point(x, y, srid=4326)
        account.save()
    AccountFactory(location=Point(11, 14, srid=4326))  # unassigned: not part of any hull
    response = client_for(world.planner).get(url(world.plan, "territories/"))
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "FeatureCollection"
    features = {f["properties"]["code"]: f for f in body["features"]}
    e1 = features["E-T1"]
    assert e1["geometry"]["type"] in ("Polygon", "MultiPolygon")
    xs = [pt[0] for ring in _rings(e1["geometry"]) for pt in ring]
    assert min(xs) == 0 and max(xs) == 2  # one shape over both squares
    assert features["E"]["geometry"] is not None  # the parent covers its subtree's units
    assert features["W-T1"]["geometry"]["type"] == "LineString"  # two accounts: a degenerate hull
    props = e1["properties"]
    assert props["path"] == ["East", "East D1", "East 1"] and props["is_leaf"] is True
    assert props["reps"][0]["external_id"] == "REP-E-T1" and props["metrics"]["accounts"] == 2
    assert props["color"].startswith("#") and props["parent_id"] == world.leaves["E-T1"].parent_id
    leaves = client_for(world.planner).get(url(world.plan, "territories/?leaves=true")).json()["features"]
    assert {f["properties"]["code"] for f in leaves} == {"E-T1", "E-T2", "W-T1", "W-T2"}
    assert_error_shape(
        client_for(world.planner).get(url(world.plan, "territories/?leaves=maybe")), 400, "leaves"
    )


def test_territories_geojson_is_scoped(world):
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    features = client_for(world.manager_west).get(url(world.plan, "territories/")).json()["features"]
    assert {f["properties"]["code"] for f in features} == {"W", "W-D1", "W-T1", "W-T2"}
    assert all(f["geometry"] is None or f["properties"]["code"].startswith("W") for f in features)


def _rings(geometry):
    if geometry["type"] == "Polygon":
        return geometry["coordinates"]
    return [ring for polygon in geometry["coordinates"] for ring in polygon]


# ------------------------------------------------------------------------------------------------
# diff


def test_diff_lists_moved_accounts_disruption_and_deltas(world):
    clone = services.plan_clone(plan=world.plan, name="Scenario", actor=world.planner)
    moved = world.accounts["E-T1"][0]
    moved.revenue = 3000
    moved.save()
    target = clone.territories.get(code="W-T2")
    services.account_assignments_move(plan=clone, account_ids=[moved.pk], territory=target)
    response = client_for(world.planner).get(url(clone, f"diff/?other={world.plan.pk}"))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["plan"], body["other"], body["accounts_total"], body["moved_total"]) == (
        clone.pk,
        world.plan.pk,
        8,
        1,
    )
    assert body["moved_share"] == 0.125 and body["disruption"]["accounts"] == 0.125
    assert body["disruption"]["revenue"] == pytest.approx(3000 / 10000, abs=1e-4)
    [row] = body["moved_accounts"]
    assert row["account_id"] == moved.pk and row["external_id"] == moved.external_id
    assert row["from"]["code"] == "E-T1" and row["from"]["id"] == world.leaves["E-T1"].pk
    assert row["to"] == {"id": target.pk, "code": "W-T2", "name": "West 2"}
    deltas = by_code(body["territories"])
    assert deltas["E-T1"]["metrics"]["accounts"] == {"plan": 1, "other": 2, "delta": -1}
    assert deltas["W-T2"]["metrics"]["revenue"]["delta"] == 3000.0
    assert deltas["E"]["plan_territory_id"] == clone.territories.get(code="E").pk
    assert deltas["E"]["other_territory_id"] == world.east.pk
    assert (
        client_for(world.planner)
        .get(url(clone, f"diff/?other={world.plan.pk}&limit=0"))
        .json()["moved_accounts"]
        == []
    )


def test_diff_validates_its_parameters(world):
    client = client_for(world.planner)
    assert_error_shape(client.get(url(world.plan, "diff/")), 400, "other")
    assert_error_shape(client.get(url(world.plan, "diff/?other=x")), 400, "other")
    assert_error_shape(client.get(url(world.plan, "diff/?other=999999")), 400, "other")
    assert_error_shape(client.get(url(world.plan, f"diff/?other={world.plan.pk}&limit=99999")), 400, "limit")
    body = client.get(url(world.plan, f"diff/?other={world.plan.pk}")).json()
    assert body["moved_total"] == 0 and body["moved_share"] == 0


def test_diff_is_scoped_for_managers(world):
    clone = services.plan_clone(plan=world.plan, name="Scenario", actor=world.planner)
    services.account_assignments_move(
        plan=clone, account_ids=[world.accounts["E-T1"][0].pk], territory=clone.territories.get(code="E-T2")
    )
    services.account_assignments_move(
        plan=clone, account_ids=[world.accounts["W-T1"][0].pk], territory=clone.territories.get(code="W-T2")
    )
    Plan.objects.filter(pk__in=[clone.pk, world.plan.pk]).update(status=PlanStatus.IN_REVIEW)
    body = client_for(world.manager_west).get(url(clone, f"diff/?other={world.plan.pk}")).json()
    assert body["accounts_total"] == 4 and body["moved_total"] == 1
    assert [r["account_id"] for r in body["moved_accounts"]] == [world.accounts["W-T1"][0].pk]
    assert {r["code"] for r in body["territories"]} == {"W", "W-D1", "W-T1", "W-T2"}


def test_territory_outlines_follow_unit_moves(world):
    left, right = GeoUnitFactory(geom=square(0, 0)), GeoUnitFactory(geom=square(1, 0))
    assign_unit(world.plan, left, world.leaves["E-T1"])
    assign_unit(world.plan, right, world.leaves["E-T1"])
    client = client_for(world.planner)

    def extent(code):
        features = client.get(url(world.plan, "territories/")).json()["features"]
        geometry = next(f["geometry"] for f in features if f["properties"]["code"] == code)
        xs = [pt[0] for ring in _rings(geometry) for pt in ring]
        return min(xs), max(xs)

    assert extent("E-T1") == (0, 2)
    # An account move keeps the outlines (they are reused), a unit move redraws them.
    services.account_assignments_move(
        plan=world.plan, account_ids=[world.accounts["E-T1"][0].pk], territory=world.leaves["W-T1"]
    )
    assert extent("E-T1") == (0, 2)
    services.unit_assignments_move(plan=world.plan, unit_ids=[right.pk], territory=world.leaves["W-T1"])
    assert extent("E-T1") == (0, 1) and extent("W-T1") == (1, 2)


HUGE = 10**30


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/v1/plans/{huge}/", None),
        ("get", "/api/v1/plans/{plan}/assignments/?territory={huge}", None),
        ("get", "/api/v1/plans/{plan}/assignments/?account=1e400", None),
        ("get", "/api/v1/plans/{plan}/diff/?other={huge}", None),
        ("get", "/api/v1/plans/{plan}/diff/?other=-1&limit=-5", None),
        ("get", "/api/v1/plans/?based_on={huge}", None),
        ("get", "/api/v1/geounits/?plan={huge}&in_bbox=inf,0,1,1", None),
        ("get", "/api/v1/accounts/{huge}/ownership/", None),
        ("get", "/api/v1/accounts/1/ownership/?at=9999-12-31", None),
        ("get", "/api/v1/changes/?cursor=eyJ4IjogMX0", None),
        ("patch", "/api/v1/plans/{plan}/", {"version": HUGE, "name": "x" * 500}),
        ("patch", "/api/v1/plans/{plan}/", ["not", "an", "object"]),
        (
            "post",
            "/api/v1/plans/{plan}/assignments/",
            {"account_ids": [HUGE], "territory": HUGE, "version": 1},
        ),
        ("post", "/api/v1/plans/{plan}/assignments/", {"unit_ids": "all", "territory": 1, "version": 1}),
        ("post", "/api/v1/plans/{plan}/publish/", {"effective_from": "9999-12-31", "version": 1}),
        ("post", "/api/v1/plans/{plan}/transition/", {"status": None, "version": 1}),
        ("post", "/api/v1/plans/{plan}/clone/", {"name": "x" * 300}),
        ("post", "/api/v1/route/", {"name": "x", "employees": HUGE, "at": "9999-12-31"}),
        ("post", "/api/v1/route/", {"name": "x", "attributes": {"a": {"b": [None]}}, "postal_code": "ABCDE"}),
        ("post", "/api/v1/route/batch/", {"leads": [None, 1, "x"]}),
    ],
)
def test_odd_input_never_gives_a_server_error(world, method, path, body):
    client = client_for(world.planner)
    url_ = path.format(plan=world.plan.pk, huge=HUGE)
    response = getattr(client, method)(url_, body, format="json") if body is not None else client.get(url_)
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert set(response.json()) == {"message", "errors"}

"""accounts/ and reps/ endpoints: scope by persona, filters, ordering, pagination, single writes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.gis.geos import Point
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Account, PostalCode, Rep
from tests.factories import AccountFactory

from .api_fixtures import *  # noqa: F403  (fixtures live_world, client_as)

pytestmark = pytest.mark.django_db

URL = "/api/v1/accounts/"


def names(response):
    assert response.status_code == 200, response.content
    return sorted(row["name"] for row in response.json()["results"])


def test_planner_sees_every_account_manager_their_subtree_rep_their_territory(live_world, client_as):
    w = live_world
    AccountFactory(name="Unassigned")
    assert len(names(client_as(w.planner).get(URL))) == 9
    assert names(client_as(w.manager_west).get(URL)) == [
        "W-T1 account 1", "W-T1 account 2", "W-T2 account 1", "W-T2 account 2",
    ]  # fmt: skip
    assert names(client_as(w.rep_user).get(URL)) == ["E-T1 account 1", "E-T1 account 2"]
    assert names(client_as(w.outsider).get(URL)) == []
    # The same through a token: it inherits its user's scope.
    assert len(names(client_as(w.manager_west, scopes=["read"]).get(URL))) == 4


def test_detail_outside_scope_is_404(live_world, client_as):
    east = live_world.accounts["E-T1"][0]
    assert client_as(live_world.manager_west).get(f"{URL}{east.pk}/").status_code == 404
    response = client_as(live_world.rep_user).get(f"{URL}{east.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["external_id"] == east.external_id
    assert body["location"] == {"type": "Point", "coordinates": [0.5, 0.5]}
    assert (body["longitude"], body["latitude"]) == (0.5, 0.5)


def test_managers_do_not_see_draft_plans(world, client_as):
    # world.plan is a draft: no plan is in effect, so a manager sees nothing, and may not pick it.
    client = client_as(world.manager_west)
    assert names(client.get(URL)) == []
    response = client.get(URL, {"plan": world.plan.pk})
    assert response.status_code == 400
    assert response.json()["errors"] == {"plan": [f"No plan {world.plan.pk} that you can see."]}


def test_anonymous_is_401(db):
    from rest_framework.test import APIClient

    response = APIClient().get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert set(response.json()) == {"message", "errors"}


def test_filters(live_world, client_as):
    w = live_world
    client = client_as(w.planner)
    special = AccountFactory(
        name="Zeta Hospital", industry="Healthcare", segment="enterprise", status="prospect",
        city="Springfield", location=Point(-100, 40, srid=4326),
    )  # fmt: skip
    assert names(client.get(URL, {"plan": w.plan.pk, "territory": w.west.pk})) == [
        "W-T1 account 1", "W-T1 account 2", "W-T2 account 1", "W-T2 account 2",
    ]  # fmt: skip
    # A territory alone implies its plan.
    assert names(client.get(URL, {"territory": w.leaves["E-T2"].pk})) == ["E-T2 account 1", "E-T2 account 2"]
    assert names(client.get(URL, {"plan": w.plan.pk, "rep": w.reps["W-T2"].pk})) == [
        "W-T2 account 1", "W-T2 account 2",
    ]  # fmt: skip
    assert names(client.get(URL, {"industry": "healthcare"})) == ["Zeta Hospital"]
    assert names(client.get(URL, {"segment": "enterprise"})) == ["Zeta Hospital"]
    assert len(names(client.get(URL, {"status": ["customer", "churned"]}))) == 8
    assert names(client.get(URL, {"in_bbox": "-101,39,-99,41"})) == ["Zeta Hospital"]
    assert names(client.get(URL, {"q": "springf"})) == ["Zeta Hospital"]
    assert names(client.get(URL, {"external_id": f"{special.external_id},nope"})) == ["Zeta Hospital"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"in_bbox": "1,2,3"}, "in_bbox"),
        ({"in_bbox": "5,0,1,1"}, "in_bbox"),
        ({"segment": "huge"}, "segment"),
        ({"ordering": "password"}, "ordering"),
        ({"plan": "abc"}, "plan"),
        ({"plan": 999999}, "plan"),
        ({"plan": "1", "territory": 999999}, "plan"),
        ({"limit": "x"}, None),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(live_world, client_as, params, field):
    if params.get("plan") == "1":
        params = {**params, "plan": live_world.plan.pk}
        field = "territory"
    response = client_as(live_world.planner).get(URL, params)
    if field is None:
        assert response.status_code == 200  # DRF falls back to the default limit
        return
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_ordering_and_pagination(live_world, client_as):
    client = client_as(live_world.planner)
    Account.objects.filter(name="E-T1 account 1").update(revenue=Decimal("99999"))
    first = client.get(URL, {"ordering": "-revenue", "limit": 1}).json()
    assert first["count"] == 8 and first["results"][0]["name"] == "E-T1 account 1"
    pages = [client.get(URL, {"limit": 3, "offset": offset}).json()["results"] for offset in (0, 3, 6)]
    seen = [row["name"] for page in pages for row in page]
    assert seen == sorted(seen) and len(set(seen)) == 8
    assert client.get(URL, {"limit": 5000}).json()["results"].__len__() == 8
    response = client.get(URL, {"limit": 5000})
    assert "limit=1000" not in response.content.decode()  # max 1000 is enforced silently by DRF


@pytest.mark.parametrize("persona", ["planner", "manager_west", "rep_user"])
def test_list_query_count_does_not_grow_with_rows(live_world, client_as, persona):
    user = getattr(live_world, persona)
    client = client_as(user, scopes=["read"])
    client.get(URL)  # warm up: token last_used written once
    with CaptureQueriesContext(connection) as small:
        assert client.get(URL).status_code == 200
    leaf = live_world.leaves["E-T1"] if persona == "rep_user" else live_world.leaves["W-T1"]
    from territories.models import AccountAssignment

    parent = live_world.accounts["W-T1"][0]
    for n in range(30):
        account = AccountFactory(name=f"More {n}", parent=parent, attributes={"n": n})
        AccountAssignment.objects.create(
            plan=live_world.plan, account=account, territory=leaf, source="manual"
        )
    with CaptureQueriesContext(connection) as large:
        assert client.get(URL).status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)
    assert len(large.captured_queries) <= 8


def test_create_geocodes_by_postal_code_and_rejects_duplicates(live_world, client_as):
    PostalCode.objects.create(
        code="94103", location=Point(-122.41, 37.77, srid=4326), city="San Francisco", state="CA"
    )
    client = client_as(live_world.integration, scopes=["read", "write"])
    response = client.post(
        URL,
        {"external_id": "CRM-1", "name": "Acme", "postal_code": "94103-1234", "revenue": "1,200.50"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["postal_code"] == "94103" and body["geocode_quality"] == "postal"
    assert body["location"]["coordinates"] == pytest.approx([-122.41, 37.77])
    assert body["revenue"] == "1200.50"
    again = client.post(URL, {"external_id": "CRM-1", "name": "Acme"}, format="json")
    assert again.status_code == 409
    assert "external_id" in again.json()["errors"]


def test_create_with_bad_fields_names_them(live_world, client_as):
    client = client_as(live_world.planner)
    response = client.post(
        URL, {"external_id": "X", "revenue": "lots", "segment": "huge", "bogus": 1}, format="json"
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"name", "revenue", "segment", "bogus"}
    assert not Account.objects.filter(external_id="X").exists()
    assert client.post(URL, ["not", "an", "object"], format="json").status_code == 400


def test_patch_put_and_roundtrip_keep_quality(live_world, client_as):
    client = client_as(live_world.planner)
    account = live_world.accounts["E-T1"][0]
    PostalCode.objects.create(code="94103", location=Point(-122.41, 37.77, srid=4326), city="SF", state="CA")
    Account.objects.filter(pk=account.pk).update(
        geocode_quality="postal", postal_code="94103", location=Point(-122.41, 37.77, srid=4326),
        attributes={"a": 1, "b": 2},
    )  # fmt: skip
    url = f"{URL}{account.pk}/"
    body = client.get(url).json()
    body["name"] = "Renamed"
    response = client.put(url, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Renamed"
    assert response.json()["geocode_quality"] == "postal"  # its coordinates came back unchanged
    assert response.json()["attributes"] == {"a": 1, "b": 2}
    response = client.patch(url, {"location": {"type": "Point", "coordinates": [-90, 30]}}, format="json")
    assert response.json()["geocode_quality"] == "exact" and response.json()["longitude"] == -90
    response = client.put(url, {"name": "Same place", "latitude": 30, "longitude": -90}, format="json")
    assert response.json()["location"]["coordinates"] == [-90, 30] and response.json()["postal_code"] == ""
    response = client.put(url, {"name": "Only name"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["industry"] == "" and body["attributes"] == {} and body["location"] is None
    assert client.patch(url, {"external_id": "other"}, format="json").status_code == 400
    assert client.patch(url, {"location": {"type": "Line"}}, format="json").status_code == 400


def test_managers_and_reps_are_read_only(live_world, client_as):
    account = live_world.accounts["W-T1"][0]
    for user in (live_world.manager_west, live_world.rep_user):
        client = client_as(user)
        response = client.patch(f"{URL}{account.pk}/", {"name": "x"}, format="json")
        assert response.status_code == 403
        assert "may only read" in response.json()["message"]
        assert client.post(URL, {"external_id": "N", "name": "n"}, format="json").status_code == 403
    assert Account.objects.get(pk=account.pk).name != "x"


def test_token_scopes(live_world, client_as):
    reader = client_as(live_world.integration, scopes=["read"])
    assert reader.get(URL).status_code == 200
    response = reader.post(URL, {"external_id": "N", "name": "n"}, format="json")
    assert response.status_code == 403
    assert "'write' scope" in response.json()["message"]
    writer = client_as(live_world.integration, scopes=["write"])
    response = writer.get(URL)
    assert response.status_code == 403 and "'read' scope" in response.json()["message"]
    assert writer.post(URL, {"external_id": "N", "name": "n"}, format="json").status_code == 201
    router = client_as(live_world.integration, scopes=["route"])
    assert router.get("/api/v1/me/").status_code == 200  # any token may ask who it is


def test_delete(live_world, client_as):
    client = client_as(live_world.planner)
    account = live_world.accounts["E-T2"][0]
    assert client.delete(f"{URL}{account.pk}/").status_code == 204
    assert not Account.objects.filter(pk=account.pk).exists()
    rep = live_world.reps["E-T2"]
    response = client.delete(f"/api/v1/reps/{rep.pk}/")
    assert response.status_code == 409 and "territor" in response.json()["message"]
    assert Rep.objects.filter(pk=rep.pk).exists()


def test_reps_scope_and_filters(live_world, client_as):
    w = live_world
    url = "/api/v1/reps/"
    assert len(client_as(w.planner).get(url).json()["results"]) == 4
    west = client_as(w.manager_west).get(url).json()["results"]
    assert sorted(r["external_id"] for r in west) == ["REP-W-T1", "REP-W-T2"]
    own = client_as(w.rep_user).get(url).json()["results"]
    assert [r["external_id"] for r in own] == ["REP-E-T1"] and own[0]["username"] == "rep.e1"
    planner = client_as(w.planner)
    assert [r["external_id"] for r in planner.get(url, {"territory": w.east.pk}).json()["results"]] == [
        "REP-E-T1", "REP-E-T2",
    ]  # fmt: skip
    response = planner.post(url, {"external_id": "R-9", "name": "New", "capacity_fte": 3}, format="json")
    assert response.status_code == 400 and "capacity_fte" in response.json()["errors"]
    response = planner.post(
        url,
        {"external_id": "R-9", "name": "New", "manager_external_id": "REP-E-T1", "specialties": ["Retail"]},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["manager_external_id"] == "REP-E-T1" and response.json()["specialties"] == [
        "Retail"
    ]
    assert [r["external_id"] for r in planner.get(url, {"manager": "REP-E-T1"}).json()["results"]] == ["R-9"]
    assert planner.delete(f"{url}{response.json()['id']}/").status_code == 204


@pytest.mark.parametrize("persona", ["planner", "manager_west"])
def test_rep_list_query_count_does_not_grow_with_rows(live_world, client_as, persona):
    from tests.factories import RepFactory, UserFactory, add_member

    client = client_as(getattr(live_world, persona), scopes=["read"])
    client.get("/api/v1/reps/")
    with CaptureQueriesContext(connection) as small:
        assert client.get("/api/v1/reps/").status_code == 200
    boss = live_world.reps["W-T1"]
    for _ in range(20):
        rep = RepFactory(manager=boss, user=UserFactory(), specialties=["Retail"])
        add_member(live_world.leaves["W-T2"], rep, role="support")
    with CaptureQueriesContext(connection) as large:
        response = client.get("/api/v1/reps/")
    assert response.status_code == 200 and response.json()["count"] >= 22
    assert len(large.captured_queries) == len(small.captured_queries) <= 8


def test_an_account_with_bookings_is_not_deleted(live_world, client_as):
    import datetime as dt

    from quotas.models import Booking

    account = live_world.accounts["W-T1"][0]
    Booking.objects.create(
        external_id="B-1",
        account=account,
        amount=Decimal("100"),
        booked_on=dt.date(2026, 1, 5),
        component="renewal",
    )
    response = client_as(live_world.planner).delete(f"{URL}{account.pk}/")
    assert response.status_code == 409
    assert "booking" in response.json()["message"] and "bookings" in response.json()["errors"]
    assert Account.objects.filter(pk=account.pk).exists()

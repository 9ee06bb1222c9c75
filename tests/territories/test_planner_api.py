"""The planner page and its own API: 'why is this account here?' from the resolver, selections by
box and lasso with totals, the unit → territory map with label points; each scoped per persona."""

from __future__ import annotations

import json

import pytest
from django.contrib.gis.geos import Point
from rest_framework.test import APIClient

from territories import tiles
from territories.models import AccountAssignment, AssignmentRule
from tests.factories import GeoUnitFactory, assign_unit, square


@pytest.fixture(autouse=True)
def fresh_caches():
    tiles.caches_clear()
    yield
    tiles.caches_clear()


@pytest.fixture
def placed(world):
    """East accounts around (1, 1), West accounts around (5, 1); a county under each region."""
    for i, account in enumerate([*world.accounts["E-T1"], *world.accounts["E-T2"]]):
        account.location = Point(1 + i * 0.1, 1, srid=4326)
        account.save(update_fields=["location"])
    for i, account in enumerate([*world.accounts["W-T1"], *world.accounts["W-T2"]]):
        account.location = Point(5 + i * 0.1, 1, srid=4326)
        account.save(update_fields=["location"])
    east_county = GeoUnitFactory(geom=square(0.5, 0.5, 1), name="East county")
    west_county = GeoUnitFactory(geom=square(4.5, 0.5, 1), name="West county")
    assign_unit(world.plan, east_county, world.leaves["E-T1"])
    assign_unit(world.plan, west_county, world.leaves["W-T1"])
    world.units = {"east": east_county, "west": west_county}
    return world


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_why_explains_a_rule_and_flags_a_manual_move_the_resolver_would_undo(placed):
    account = placed.accounts["E-T1"][0]
    AssignmentRule.objects.create(
        plan=placed.plan,
        territory=placed.leaves["E-T2"],
        name="Manufacturing east",
        priority=10,
        conditions=[{"field": "industry", "op": "eq", "value": "Manufacturing"}],
    )
    data = client_for(placed.planner).get(f"/api/v1/plans/{placed.plan.pk}/accounts/{account.pk}/why/").json()
    assert data["step"] == "rule"
    assert data["rule"]["name"] == "Manufacturing east"
    assert data["territory"]["code"] == "E-T2"
    assert data["path"] == ["E", "E-D1", "E-T2"]
    assert "Manufacturing east" in data["explanation"]
    assert data["stored"] == {
        "territory": {"id": placed.leaves["E-T1"].pk, "code": "E-T1", "name": "East 1"},
        "source": "manual",
        "locked": False,
    }
    assert data["agrees"] is False
    assert "Lock it" in data["note"]


def test_why_for_a_locked_account_agrees(placed):
    account = placed.accounts["W-T1"][0]
    AccountAssignment.objects.filter(plan=placed.plan, account=account).update(locked=True)
    data = client_for(placed.planner).get(f"/api/v1/plans/{placed.plan.pk}/accounts/{account.pk}/why/").json()
    assert data["step"] == "locked"
    assert data["locked"] is True
    assert data["agrees"] is True
    assert data["note"] == ""


def test_why_by_geography_names_the_unit(placed):
    account = placed.accounts["E-T2"][0]
    data = client_for(placed.planner).get(f"/api/v1/plans/{placed.plan.pk}/accounts/{account.pk}/why/").json()
    assert data["step"] == "geography"
    assert data["unit"]["name"] == "East county"
    assert data["territory"]["code"] == "E-T1"


def test_why_is_scoped(placed):
    placed.plan.status = "in_review"
    placed.plan.save()
    east_account = placed.accounts["E-T1"][0]
    url = f"/api/v1/plans/{placed.plan.pk}/accounts/{east_account.pk}/why/"
    assert client_for(placed.manager_west).get(url).status_code == 404
    assert client_for(placed.rep_user).get(url).status_code == 200
    assert client_for(placed.outsider).get(url).status_code == 404
    assert APIClient().get(url).status_code == 401


def test_box_selection_returns_accounts_units_and_totals(placed):
    data = client_for(placed.planner).get(f"/api/v1/plans/{placed.plan.pk}/selection/?bbox=0,0,3,2").json()
    east = sorted(a.pk for code in ("E-T1", "E-T2") for a in placed.accounts[code])
    assert data["account_ids"] == east
    assert data["unit_ids"] == [placed.units["east"].pk]
    assert data["totals"] == {
        "accounts": 4,
        "revenue": 4000.0,
        "potential": 20000.0,
        "workload": 40.0,
        "units": 1,
    }
    assert data["truncated"] is False
    assert {row["territory_id"]: (row["accounts"], row["revenue"]) for row in data["by_territory"]} == {
        placed.leaves["E-T1"].pk: (2, 2000.0),
        placed.leaves["E-T2"].pk: (2, 2000.0),
    }


def test_lasso_selection_takes_a_geojson_polygon(placed):
    # A triangle around the first two West accounts only (x 5.0 and 5.1).
    polygon = {"type": "Polygon", "coordinates": [[[4.9, 0.8], [5.25, 0.8], [5.0, 1.4], [4.9, 0.8]]]}
    response = client_for(placed.planner).post(
        f"/api/v1/plans/{placed.plan.pk}/selection/", {"polygon": polygon}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["account_ids"] == sorted(a.pk for a in placed.accounts["W-T1"])


def test_a_self_crossing_lasso_is_repaired(placed):
    bow_tie = {
        "type": "Polygon",
        "coordinates": [[[4.9, 0.9], [5.5, 1.1], [5.5, 0.9], [4.9, 1.1], [4.9, 0.9]]],
    }
    response = client_for(placed.planner).post(
        f"/api/v1/plans/{placed.plan.pk}/selection/", {"polygon": bow_tie}, format="json"
    )
    assert response.status_code == 200
    assert len(response.json()["account_ids"]) >= 1


@pytest.mark.parametrize(
    ("method", "payload", "field"),
    [
        ("get", "bbox=1,2,3", "bbox"),
        ("get", "bbox=3,0,1,2", "bbox"),
        ("get", "", "bbox"),
        ("post", {"polygon": {"type": "Point", "coordinates": [1, 2]}}, "polygon"),
        ("post", {"polygon": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}}, "polygon"),
        ("post", {"polygon": "not geojson"}, "polygon"),
    ],
)
def test_bad_selections_name_the_field(placed, method, payload, field):
    client = client_for(placed.planner)
    url = f"/api/v1/plans/{placed.plan.pk}/selection/"
    response = client.get(f"{url}?{payload}") if method == "get" else client.post(url, payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_a_manager_selects_only_their_accounts_and_units(placed):
    placed.plan.status = "in_review"
    placed.plan.save()
    data = (
        client_for(placed.manager_west).get(f"/api/v1/plans/{placed.plan.pk}/selection/?bbox=0,0,6,2").json()
    )
    assert data["account_ids"] == sorted(a.pk for code in ("W-T1", "W-T2") for a in placed.accounts[code])
    assert data["unit_ids"] == [placed.units["west"].pk]


def test_map_lists_units_colours_and_a_label_inside_each_leaf(placed):
    data = client_for(placed.planner).get(f"/api/v1/plans/{placed.plan.pk}/map/").json()
    assert data["plan"]["version"] == placed.plan.version
    assert sorted(data["units"]) == sorted(
        [
            [placed.units["east"].pk, placed.leaves["E-T1"].pk, False],
            [placed.units["west"].pk, placed.leaves["W-T1"].pk, False],
        ]
    )
    leaves = {t["id"] for t in data["territories"] if t["is_leaf"]}
    assert leaves == {t.pk for t in placed.leaves.values()}
    labels = {label["territory_id"]: (label["lon"], label["lat"]) for label in data["labels"]}
    assert set(labels) == leaves
    # E-T1 has a unit: its label is that unit's representative point; E-T2 has only accounts.
    assert placed.units["east"].geom.contains(Point(*labels[placed.leaves["E-T1"].pk]))
    assert labels[placed.leaves["E-T2"].pk] == pytest.approx((1.25, 1.0))


def test_map_is_scoped_for_a_manager(placed):
    placed.plan.status = "in_review"
    placed.plan.save()
    data = client_for(placed.manager_west).get(f"/api/v1/plans/{placed.plan.pk}/map/").json()
    codes = {t["code"] for t in data["territories"]}
    assert codes == {"W", "W-D1", "W-T1", "W-T2"}
    assert [u[0] for u in data["units"]] == [placed.units["west"].pk]


# ---------------------------------------------------------------------------------------------
# The page


def config_of(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="planner-config" type="application/json">') + len(
        '<script id="planner-config" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_planner_page_for_a_planner_is_editable(client, placed):
    client.force_login(placed.planner)
    response = client.get(f"/planner/{placed.plan.pk}/")
    assert response.status_code == 200
    config = config_of(response)
    assert config["plan"] == {
        "id": placed.plan.pk,
        "name": placed.plan.name,
        "status": "draft",
        "version": placed.plan.version,
    }
    assert config["user"]["can_plan"] is True
    assert config["tiles"]["accounts"].endswith(
        f"/tiles/plans/{placed.plan.pk}/accounts/{{z}}/{{x}}/{{y}}.pbf"
    )
    assert config["colours"]["industry"] == {"Manufacturing": "#0072B2"}
    assert b'id="planner-move"' in response.content
    assert b"vendor/maplibre-gl/maplibre-gl.js" in response.content


def test_planner_page_is_read_only_for_a_rep_and_hidden_from_strangers(client, placed):
    placed.plan.status = "in_review"
    placed.plan.save()
    client.force_login(placed.rep_user)
    response = client.get(f"/planner/{placed.plan.pk}/")
    assert response.status_code == 200
    assert config_of(response)["user"]["can_plan"] is False
    assert b"Read-only: only planners edit plans." in response.content
    assert b'id="planner-move"' not in response.content
    client.force_login(placed.outsider)
    assert client.get(f"/planner/{placed.plan.pk}/").status_code == 404
    client.logout()
    assert client.get(f"/planner/{placed.plan.pk}/").status_code == 302


def test_archived_plan_opens_read_only_for_a_planner(client, placed):
    placed.plan.status = "archived"
    placed.plan.save()
    client.force_login(placed.planner)
    response = client.get(f"/planner/{placed.plan.pk}/")
    assert config_of(response)["user"]["can_plan"] is False
    assert b"this plan is archived" in response.content

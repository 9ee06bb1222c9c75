"""Vector tiles for the planner: decoded with mapbox-vector-tile and checked feature by feature
(never byte-compared), scoped per persona, aggregated at low zoom, with a query budget."""

from __future__ import annotations

import mapbox_vector_tile
import pytest
from django.contrib.gis.geos import Point
from django.db import connection
from django.test.utils import CaptureQueriesContext

from territories import tiles
from territories.choices import UnitLevel
from tests.factories import GeoUnitFactory, square

# Accounts spread around the middle of the z12 tile holding (10.05°E, 10.05°N), away from the
# factories' default point, so every zoom's tile around them holds all of them.
_WEST, _SOUTH, _EAST, _NORTH = tiles.tile_bounds_lonlat(12, *tiles.tile_for_lonlat(12, 10.05, 10.05))
LON0, LAT0 = (_WEST + _EAST) / 2, (_SOUTH + _NORTH) / 2


@pytest.fixture(autouse=True)
def fresh_caches():
    tiles.caches_clear()
    yield
    tiles.caches_clear()


@pytest.fixture
def spread(world):
    """Each of the world's accounts on its own spot near (10, 10): leaf E-T1 first, W-T2 last."""
    n = 0
    for code in ("E-T1", "E-T2", "W-T1", "W-T2"):
        for account in world.accounts[code]:
            account.location = Point(LON0 - 0.008 + n * 0.002, LAT0 - 0.004 + n * 0.001, srid=4326)
            account.save(update_fields=["location"])
            n += 1
    return world


def decode(response) -> dict:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(response.content)


def tile_url(plan_id: int, z: int, lon: float = LON0, lat: float = LAT0) -> str:
    x, y = tiles.tile_for_lonlat(z, lon, lat)
    return f"/tiles/plans/{plan_id}/accounts/{z}/{x}/{y}.pbf"


def test_raw_tile_carries_every_account_with_its_owner(client, spread):
    client.force_login(spread.planner)
    layer = decode(client.get(tile_url(spread.plan.pk, 12)))["accounts"]
    by_id = {f["id"]: f["properties"] for f in layer["features"]}
    assert len(by_id) == 8
    account = spread.accounts["W-T2"][0]
    props = by_id[account.pk]
    assert props["territory_id"] == spread.leaves["W-T2"].pk
    assert props["color"] == spread.leaves["W-T2"].color
    assert props["segment"] == account.segment
    assert props["revenue"] == pytest.approx(float(account.revenue))
    assert props["locked"] is False
    # Extent 4096, inside the tile.
    for feature in layer["features"]:
        x, y = feature["geometry"]["coordinates"]
        assert 0 <= x <= 4096 and 0 <= y <= 4096


def test_raw_tile_is_scoped_to_the_managers_subtree(client, spread):
    client.force_login(spread.manager_west)
    # Managers do not see draft plans; in review they do.
    spread.plan.status = "in_review"
    spread.plan.save()
    layer = decode(client.get(tile_url(spread.plan.pk, 12)))["accounts"]
    ids = {f["id"] for f in layer["features"]}
    west = {a.pk for code in ("W-T1", "W-T2") for a in spread.accounts[code]}
    assert ids == west


def test_rep_sees_only_their_territory(client, spread):
    spread.plan.status = "in_review"
    spread.plan.save()
    client.force_login(spread.rep_user)
    layer = decode(client.get(tile_url(spread.plan.pk, 12)))["accounts"]
    assert {f["id"] for f in layer["features"]} == {a.pk for a in spread.accounts["E-T1"]}


def test_low_zoom_tiles_aggregate_and_keep_counts(client, spread):
    client.force_login(spread.planner)
    for z in (2, 5, 8):
        layer = decode(client.get(tile_url(spread.plan.pk, z)))["accounts"]
        features = layer["features"]
        assert sum(f["properties"]["n"] for f in features) == 8
        assert len(features) < 8  # neighbours share a cell at these zooms
        total_revenue = sum(f["properties"]["revenue"] for f in features)
        assert total_revenue == pytest.approx(8 * 1000)
        assert all(f["properties"]["segment"] == "smb" for f in features)


def test_a_lone_account_stays_clickable_at_low_zoom_and_in_place(client, spread):
    client.force_login(spread.planner)
    lone = spread.accounts["E-T1"][0]
    lone.location = Point(-60.0, -30.0, srid=4326)
    lone.save(update_fields=["location"])
    tiles.caches_clear()
    aggregated = decode(client.get(tile_url(spread.plan.pk, 6, -60.0, -30.0)))["accounts"]["features"]
    raw = decode(client.get(tile_url(spread.plan.pk, 11, -60.0, -30.0)))["accounts"]["features"]
    assert [f["id"] for f in aggregated] == [lone.pk]
    assert aggregated[0]["properties"]["n"] == 1
    # The same point: z11 coordinates are the z6 ones times 2^5 minus the tile offset.
    x6, y6 = tiles.tile_for_lonlat(6, -60.0, -30.0)
    x11, y11 = tiles.tile_for_lonlat(11, -60.0, -30.0)
    ax, ay = aggregated[0]["geometry"]["coordinates"]
    rx, ry = raw[0]["geometry"]["coordinates"]
    world_a = ((x6 + ax / 4096) * 32, (y6 + 1 - ay / 4096) * 32)  # decode flips y upwards
    world_r = (x11 + rx / 4096, y11 + 1 - ry / 4096)
    assert world_a == pytest.approx(world_r, abs=0.01)


def test_aggregate_grid_follows_new_accounts_after_the_stamp_expires(client, spread, monkeypatch):
    client.force_login(spread.planner)
    url = tile_url(spread.plan.pk, 4)
    before = sum(f["properties"]["n"] for f in decode(client.get(url))["accounts"]["features"])
    from tests.factories import AccountFactory

    AccountFactory(location=Point(LON0, LAT0, srid=4326))
    monkeypatch.setattr(tiles, "STAMP_TTL_SECONDS", 0.0)
    after = sum(f["properties"]["n"] for f in decode(client.get(url))["accounts"]["features"])
    assert after == before + 1


def test_base_tile_has_states_and_counties_with_unit_ids(client, world):
    state = GeoUnitFactory(level=UnitLevel.STATE, code="99", name="Squareland", geom=square(9, 9, 3))
    county = GeoUnitFactory(
        level=UnitLevel.COUNTY, code="99001", name="Corner", geom=square(10, 10, 0.5), parent=state
    )
    client.force_login(world.rep_user)
    x, y = tiles.tile_for_lonlat(5, 10.2, 10.2)
    layers = decode(client.get(f"/tiles/base/5/{x}/{y}.pbf"))
    assert [f["id"] for f in layers["states"]["features"]] == [state.pk]
    assert layers["states"]["features"][0]["properties"]["name"] == "Squareland"
    units = layers["units"]["features"]
    assert [f["id"] for f in units] == [county.pk]
    assert units[0]["properties"]["level"] == "county"
    # Counties only from z3: a continent-wide tile stays light.
    x2, y2 = tiles.tile_for_lonlat(2, 10.2, 10.2)
    assert "units" not in decode(client.get(f"/tiles/base/2/{x2}/{y2}.pbf"))


def test_state_and_county_tiles_are_kept_for_every_process_until_the_geography_changes(
    client, world, monkeypatch
):
    from territories.models import BaseTile

    state = GeoUnitFactory(level=UnitLevel.STATE, code="99", name="Squareland", geom=square(9, 9, 3))
    client.force_login(world.planner)
    x, y = tiles.tile_for_lonlat(5, 10.2, 10.2)
    first = client.get(f"/tiles/base/5/{x}/{y}.pbf").content
    assert bytes(BaseTile.objects.filter(z=5, x=x, y=y).get().data) == first

    # Another process (nothing in its own memory) reads the kept tile: nothing is encoded.
    tiles.BASE_TILES.clear()
    monkeypatch.setattr(tiles, "_base_tile", lambda *a: pytest.fail("encoded again"))
    assert client.get(f"/tiles/base/5/{x}/{y}.pbf").content == first
    monkeypatch.undo()

    # Any geography write forgets every kept tile; the next request draws the new outline.
    state.name = "Renamed"
    state.save()
    assert not BaseTile.objects.exists()
    tiles.caches_clear()
    layers = decode(client.get(f"/tiles/base/5/{x}/{y}.pbf"))
    assert layers["states"]["features"][0]["properties"]["name"] == "Renamed"
    # Zooms with ZIP and custom units (which planners may edit) are kept per process only.
    x9, y9 = tiles.tile_for_lonlat(9, 10.2, 10.2)
    client.get(f"/tiles/base/9/{x9}/{y9}.pbf")
    assert not BaseTile.objects.filter(z=9).exists()


def test_tiles_refuse_strangers_and_bad_addresses(client, spread):
    assert client.get(tile_url(spread.plan.pk, 12)).status_code == 401
    assert client.get("/tiles/base/3/0/0.pbf").status_code == 401
    client.force_login(spread.outsider)
    assert client.get(tile_url(spread.plan.pk, 12)).status_code == 404  # a plan they cannot see
    client.force_login(spread.planner)
    response = client.get(f"/tiles/plans/{spread.plan.pk}/accounts/3/8/0.pbf")
    assert response.status_code == 404
    assert "does not exist at zoom 3" in response.json()["message"]
    assert client.get("/tiles/base/23/0/0.pbf").status_code == 404


def test_tiles_answer_in_a_fixed_number_of_queries(client, spread):
    client.force_login(spread.planner)
    client.get(tile_url(spread.plan.pk, 4))  # builds the grid
    # session, user, plan, then the tile itself (the grid is reused; no query per account).
    with CaptureQueriesContext(connection) as low:
        client.get(tile_url(spread.plan.pk, 4))
    with CaptureQueriesContext(connection) as raw:
        client.get(tile_url(spread.plan.pk, 13))
    with CaptureQueriesContext(connection) as base:
        client.get("/tiles/base/4/8/7.pbf")
    assert len(low) <= 4, [q["sql"][:80] for q in low]
    assert len(raw) <= 4, [q["sql"][:80] for q in raw]
    # A base tile never rendered before: also the lookup of the kept one and keeping it.
    assert len(base) <= 6, [q["sql"][:80] for q in base]


def test_tile_response_reports_server_time(client, spread):
    client.force_login(spread.planner)
    response = client.get(tile_url(spread.plan.pk, 12) + "?v=1")
    assert response["Server-Timing"].startswith("tile;dur=")
    assert "max-age=300" in response["Cache-Control"]

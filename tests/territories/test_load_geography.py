"""manage.py load_geography on the shipped data, against real PostGIS.

The first load (states, counties, postal codes: a few seconds) runs once for the module in an outer
transaction; each test runs in a savepoint inside it, and everything is rolled back at the end."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io

import pytest
from django.contrib.gis.geos import Point
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Count, F

from accounts.geocoding import postal_code_centroids
from accounts.models import PostalCode
from territories.choices import UnitLevel
from territories.geography import ZIP_CENTROIDS_FILE, default_data_dir
from territories.models import GeoUnit, Plan, Territory, UnitAssignment

STATE, COUNTY, ZIP = UnitLevel.STATE, UnitLevel.COUNTY, UnitLevel.ZIP
STATE_PAIRS, COUNTY_PAIRS = 107, 8942  # shared-arc neighbours in us-atlas 3.0.1 (Falls Church left out)


def load(*args: str) -> str:
    out = io.StringIO()
    call_command("load_geography", *args, verbosity=0, stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    """Everything a repeated load must leave as it was: ids, names, parents, geometries, adjacency."""
    units = [
        (
            u.level,
            u.code,
            u.id,
            u.name,
            u.parent_id,
            hashlib.sha256(bytes(u.geom.wkb)).hexdigest(),
            round(u.area_sq_km, 6),
        )
        for u in GeoUnit.objects.only("level", "code", "name", "parent_id", "geom", "area_sq_km")
    ]
    return {
        "units": sorted(units),
        "adjacency": sorted(GeoUnit.adjacent.through.objects.values_list("from_geounit_id", "to_geounit_id")),
        "postal_codes": PostalCode.objects.count(),
    }


@pytest.fixture(scope="module")
def loaded(django_db_setup, django_db_blocker):
    """One load for the whole module, inside a transaction that is rolled back at the end: nothing
    is committed, so other connections to the test database never see these rows."""
    with django_db_blocker.unblock():
        block = transaction.atomic()
        block.__enter__()
        try:
            yield load()
        finally:
            transaction.set_rollback(True)
            block.__exit__(None, None, None)


@pytest.fixture
def db_loaded(loaded, db):
    return loaded


def test_counts(db_loaded):
    assert GeoUnit.objects.filter(level=STATE).count() == 56
    assert GeoUnit.objects.filter(level=COUNTY).count() == 3230  # 3,231 less Falls Church (no area)
    with gzip.open(default_data_dir() / ZIP_CENTROIDS_FILE, "rt") as handle:
        assert PostalCode.objects.count() == sum(1 for _ in csv.DictReader(handle))
    assert "51610 (Falls Church) has no area" in db_loaded
    assert "counties created: 3,230" in db_loaded or "counties updated: 3,230" in db_loaded


def test_known_county(db_loaded):
    la = GeoUnit.objects.select_related("parent").get(level=COUNTY, code="06037")
    assert la.name == "Los Angeles County, CA"
    assert la.parent.level == STATE and la.parent.code == "06" and la.parent.name == "California"
    assert la.attributes["state_abbr"] == "CA" and la.attributes["state_fips"] == "06"
    assert 9_500 < la.area_sq_km < 13_000  # land area about 10,500 km²
    downtown = Point(-118.24, 34.05, srid=4326)
    holders = GeoUnit.objects.filter(geom__contains=downtown).values_list("code", flat=True)
    assert set(holders) == {"06", "06037"}
    assert la.geom.contains(la.centroid)
    assert la.geom_simplified.valid and la.geom_simplified.num_coords <= la.geom.num_coords
    assert GeoUnit.objects.get(level=COUNTY, code="22071").name == "Orleans Parish, LA"
    assert GeoUnit.objects.get(level=COUNTY, code="51760").name == "Richmond city, VA"
    assert GeoUnit.objects.get(level=STATE, code="44").attributes == {"state_abbr": "RI", "state_fips": "44"}


def test_every_county_has_its_state_as_parent(db_loaded):
    mismatched = [
        code
        for code, parent_code in GeoUnit.objects.filter(level=COUNTY).values_list("code", "parent__code")
        if parent_code != code[:2]
    ]
    assert mismatched == []


def test_adjacency(db_loaded):
    la = GeoUnit.objects.get(level=COUNTY, code="06037")
    neighbours = set(la.adjacent.values_list("code", flat=True))
    assert {"06059", "06111", "06029", "06071"} <= neighbours  # Orange, Ventura, Kern, San Bernardino
    assert "36061" not in neighbours
    orange = GeoUnit.objects.get(level=COUNTY, code="06059")
    assert orange.adjacent.filter(code="06037").exists()  # both directions are stored
    assert set(GeoUnit.objects.get(level=STATE, code="32").adjacent.values_list("code", flat=True)) == {
        "04", "06", "16", "41", "49",
    }  # fmt: skip
    # Adjacency stays within one level, and every pair is stored both ways.
    through = GeoUnit.adjacent.through.objects
    assert through.count() == 2 * (STATE_PAIRS + COUNTY_PAIRS)
    assert not through.exclude(from_geounit__level=F("to_geounit__level")).exists()


def test_postal_codes_geocode(db_loaded):
    found = postal_code_centroids(["90012", "02903", "00000"])
    assert set(found) == {"90012", "02903"}
    lon, lat = found["90012"]
    assert -118.3 < lon < -118.2 and 34.0 < lat < 34.1
    beverly = PostalCode.objects.get(code="90210")
    assert (beverly.city, beverly.state, beverly.county_name) == ("Beverly Hills", "CA", "Los Angeles County")


def test_second_run_changes_nothing_and_keeps_other_attributes(db_loaded):
    before = snapshot()
    GeoUnit.objects.filter(level=COUNTY, code="06037").update(
        attributes={"population": 10_000_000, "state_abbr": "x"}
    )
    output = load()
    assert snapshot() == before
    assert "counties updated: 3,230" in output and "counties created: 0" in output
    assert "postal codes created: 0" in output
    attributes = GeoUnit.objects.get(level=COUNTY, code="06037").attributes
    assert attributes["population"] == 10_000_000  # figures loaded by others survive
    assert attributes["state_abbr"] == "CA"  # ours are refreshed


def test_zip_units_for_rhode_island(db_loaded):
    output = load("--zip-units", "ri", "--skip-postal-codes")
    assert "zip units created:" in output
    cells = GeoUnit.objects.filter(level=ZIP)
    assert cells.count() > 50
    assert set(cells.values_list("parent__code", flat=True)) == {"44001", "44003", "44005", "44007", "44009"}

    with connection.cursor() as cursor:
        # Cells lie inside their county (up to float noise) ...
        cursor.execute(
            """SELECT max(ST_Area(ST_Difference(z.geom, c.geom)::geography)) FROM territories_geounit z
               JOIN territories_geounit c ON c.id = z.parent_id WHERE z.level = %s""",
            [ZIP],
        )
        assert cursor.fetchone()[0] < 1.0  # m²
        # ... and cover it: per county, the cells' areas add up to the county's. Planar (degree²)
        # areas add up exactly; geodesic ones do not quite, since a straight lon/lat edge is not a
        # great circle (a 30 km edge at 41° N bows ~15 m), hence the looser check on area_sq_km.
        cursor.execute(
            """SELECT c.code, ST_Area(c.geom), sum(ST_Area(z.geom)), ST_Area(ST_Union(z.geom)),
                      c.area_sq_km, sum(z.area_sq_km)
               FROM territories_geounit z JOIN territories_geounit c ON c.id = z.parent_id
               WHERE z.level = %s GROUP BY c.id""",
            [ZIP],
        )
        for code, county, cells_sum, cells_union, county_km2, cells_km2 in cursor.fetchall():
            assert cells_sum == pytest.approx(county, rel=1e-9), code
            assert cells_union == pytest.approx(county, rel=1e-9), code
            assert cells_km2 == pytest.approx(county_km2, rel=1e-3), code
        # Each seed ZIP's centroid lies in its own cell.
        cursor.execute(
            """SELECT count(*), count(*) FILTER (WHERE ST_Covers(z.geom, p.location))
               FROM territories_geounit z JOIN accounts_postalcode p ON p.code = z.code WHERE z.level = %s""",
            [ZIP],
        )
        total, covered = cursor.fetchone()
    assert total == cells.exclude(code__startswith="county-").count() and covered == total

    providence = cells.get(code="02903")
    assert providence.name == "02903 Providence, RI"
    assert providence.attributes["county_fips"] == "44007" and "02903" in providence.attributes["zips"]
    assert providence.adjacent.filter(code="02906").exists()
    assert GeoUnit.objects.get(level=ZIP, code="02906").adjacent.filter(code="02903").exists()
    isolated = cells.annotate(n=Count("adjacent")).filter(n=0).values_list("code", flat=True)
    assert len(isolated) < 0.1 * cells.count()  # only island ZIPs (Block Island, ...) stand alone

    before = snapshot()
    load("--zip-units", "RI", "--skip-postal-codes")
    assert snapshot() == before


def test_bad_state_is_refused(db_loaded):
    with pytest.raises(CommandError, match="XX"):
        load("--zip-units", "CA,XX")


def test_counties_without_street_zips_use_po_box_zips(db_loaded):
    load("--zip-units", "AK", "--skip-postal-codes")
    bethel = GeoUnit.objects.filter(level=ZIP, parent__code="02050")  # Bethel Census Area: PO-box ZIPs only
    assert not bethel.filter(code="county-02050").exists()
    assert bethel.count() > 10
    assert bethel.filter(name="99559 Bethel, AK").exists()


def test_stale_zip_units_are_removed_unless_referenced(db_loaded):
    load("--zip-units", "DE", "--skip-postal-codes")
    kent = GeoUnit.objects.get(level=COUNTY, code="10001")
    template = GeoUnit.objects.filter(level=ZIP, parent=kent).first()

    def stale(code):
        return GeoUnit.objects.create(
            level=ZIP, code=code, name=code, parent=kent, geom=template.geom,
            geom_simplified=template.geom_simplified, centroid=template.centroid,
        )  # fmt: skip

    unused, planned = stale("19999"), stale("19998")
    plan = Plan.objects.create(name="Plan")
    territory = Territory.objects.create(plan=plan, code="T1", name="East")
    UnitAssignment.objects.create(plan=plan, unit=planned, territory=territory)
    output = load("--zip-units", "DE", "--skip-postal-codes")
    assert "zip units removed: 1" in output
    assert "1 ZIP unit(s) stored in these counties are not in this load" in output
    assert not GeoUnit.objects.filter(pk=unused.pk).exists()
    assert GeoUnit.objects.filter(pk=planned.pk).exists()

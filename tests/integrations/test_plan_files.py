"""Plan exports (GeoJSON, zipped Shapefile, GeoPackage, unit CSV) and imports into a draft plan: an
export imported into a new draft plan gives back the same unit → territory mapping."""

from __future__ import annotations

import io
import json
import zipfile

import geopandas as gpd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from integrations.geo import plan_territories_import
from integrations.tasks import run_import
from territories.choices import ChangeKind, PlanStatus
from territories.models import Change, Plan, Territory, UnitAssignment
from territories.services import plan_create
from tessera_common.errors import ApplicationError

from ..factories import GeoUnitFactory, TerritoryFactory, assign_unit, square
from .conftest import client_for

pytestmark = pytest.mark.django_db

FORMATS = ["geojson", "shapefile", "gpkg", "units-csv"]


@pytest.fixture
def mapped(world):
    """A 4×2 grid of county units over the world plan's four leaves (two each), one unassigned."""
    units = {}
    for i in range(4):
        for j in range(2):
            units[(i, j)] = GeoUnitFactory(code=f"C{i}{j}", name=f"County {i}{j}", geom=square(i, j))
    for n, code in enumerate(["E-T1", "E-T2", "W-T1", "W-T2"]):
        assign_unit(world.plan, units[(n, 0)], world.leaves[code])
        if n < 3:
            assign_unit(world.plan, units[(n, 1)], world.leaves[code])
    return units


def mapping(plan) -> dict[str, str]:
    return dict(UnitAssignment.objects.filter(plan=plan).values_list("unit__code", "territory__code"))


def export(client, plan, fmt):
    response = client.get(f"/api/v1/plans/{plan.pk}/export/?format={fmt}")
    assert response.status_code == 200, response.content[:300]
    return response


class Answer:
    """The import's answer, with a queued job run as the worker would, then read back."""

    def __init__(self, response, client):
        self.status_code = response.status_code
        self.body = response.json()
        if self.status_code == 202 and self.body["status"] == "queued":
            run_import.run(self.body["id"])
            self.body = client.get(f"/api/v1/imports/{self.body['id']}/").json()

    def json(self):
        return self.body


def import_file(client, plan, content: bytes, name: str, **fields):
    upload = SimpleUploadedFile(name, content)
    response = client.post(f"/api/v1/plans/{plan.pk}/import/", {"file": upload, **fields}, format="multipart")
    return Answer(response, client)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_into_a_new_draft_gives_the_same_mapping(world, mapped, fmt):
    client = client_for(world.planner)
    response = export(client, world.plan, fmt)
    name = response["Content-Disposition"].split('filename="')[1].rstrip('"')
    target = plan_create(name=f"Imported from {fmt}", actor=world.planner)

    result = import_file(client, target, response.content, name, version=target.version)
    assert result.status_code == 202, result.json()
    job = result.json()
    assert job["status"] == "succeeded", job
    assert job["kind"] == "territories" and job["plan"] == target.pk

    assert mapping(target) == mapping(world.plan)
    assert len(mapping(target)) == 7
    if fmt != "units-csv":
        # The hierarchy, levels and reps come back too.
        leaf = Territory.objects.get(plan=target, code="W-T2")
        assert leaf.parent.code == "W-D1" and leaf.parent.parent.code == "W"
        assert leaf.parent.level_name == "district"
        assert list(leaf.memberships.values_list("rep__external_id", "role")) == [("REP-W-T2", "primary")]
        assert (
            Territory.objects.filter(plan=target).count() == Territory.objects.filter(plan=world.plan).count()
        )
    target.refresh_from_db()
    assert target.version > 1
    assert Change.objects.filter(plan=target, kind=ChangeKind.UNIT_MOVED).count() == 7


def test_geojson_export_has_the_attributes_and_union_geometry(world, mapped):
    data = json.loads(export(client_for(world.integration), world.plan, "geojson").content)
    features = {f["properties"]["code"]: f for f in data["features"]}
    assert set(features) == {"E", "W", "E-D1", "W-D1", "E-T1", "E-T2", "W-T1", "W-T2"}
    leaf = features["E-T1"]["properties"]
    assert leaf == {
        "code": "E-T1",
        "name": "East 1",
        "parent": "E-D1",
        "level": "territory",
        "reps": "REP-E-T1:primary",
        "color": "#888888",
        "unit_level": "county",
        "units": 2,
    }
    # E-T1 owns the two unit squares at x 0..1: their union is the 1×2 rectangle.
    shape = gpd.GeoDataFrame.from_features([features["E-T1"]]).geometry[0]
    assert shape.area == pytest.approx(2.0) and shape.bounds == (0, 0, 1, 2)
    region = gpd.GeoDataFrame.from_features([features["E"]]).geometry[0]
    assert region.area == pytest.approx(4.0)


def test_shapefile_export_is_a_zip_of_the_parts(world, mapped):
    response = export(client_for(world.planner), world.plan, "shapefile")
    assert response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert {n.rsplit(".", 1)[1] for n in names} >= {"shp", "shx", "dbf", "prj"}


def test_a_manager_exports_only_their_subtree(world, mapped):
    world.plan.status = PlanStatus.IN_REVIEW  # managers do not see drafts
    world.plan.save()
    data = json.loads(export(client_for(world.manager_west), world.plan, "geojson").content)
    assert {f["properties"]["code"] for f in data["features"]} == {"W", "W-D1", "W-T1", "W-T2"}
    csv_text = export(client_for(world.manager_west), world.plan, "units-csv").content.decode()
    assert csv_text.splitlines()[0] == "unit_code,level,territory_code,unit_name"
    assert {line.split(",")[2] for line in csv_text.splitlines()[1:]} == {"W-T1", "W-T2"}


def test_unknown_export_format_is_a_400_naming_format(world):
    response = client_for(world.planner).get(f"/api/v1/plans/{world.plan.pk}/export/?format=kml")
    assert response.status_code == 400 and "format" in response.json()["errors"]
    assert client_for(world.outsider).get(f"/api/v1/plans/{world.plan.pk}/export/").status_code == 404


def test_import_refuses_a_non_draft_plan_and_a_stale_version(world, mapped):
    client = client_for(world.planner)
    content = export(client, world.plan, "geojson").content
    world.plan.status = PlanStatus.IN_REVIEW
    world.plan.save()
    response = import_file(client, world.plan, content, "t.geojson")
    assert response.status_code == 400 and "plan" in response.json()["errors"]

    target = plan_create(name="Target", actor=world.planner)
    response = import_file(client, target, content, "t.geojson", version=target.version + 5)
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "failed" and "changed since you loaded it" in job["error"]
    assert not Territory.objects.filter(plan=target).exists()


def test_bad_features_are_reported_by_feature_and_field_and_nothing_is_written(world, mapped):
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"code": "A", "parent": "NOPE"}, "geometry": None},
            {"type": "Feature", "properties": {"code": "A"}, "geometry": None},
            {"type": "Feature", "properties": {"name": "no code"}, "geometry": None},
            {
                "type": "Feature",
                "properties": {"code": "P", "reps": "GHOST:primary", "color": "red"},
                "geometry": {"type": "Point", "coordinates": [0, 0]},
            },
            {"type": "Feature", "properties": {"code": "R", "reps": "GHOST"}, "geometry": None},
        ],
    }
    target = plan_create(name="Target", actor=world.planner)
    with pytest.raises(ApplicationError) as caught:
        plan_territories_import(plan=target, data=json.dumps(collection).encode(), actor=world.planner)
    errors = caught.value.errors
    assert "feature 1.parent" in errors and "feature 2.code" in errors and "feature 3.code" in errors
    assert "feature 4.geometry" in errors and "feature 5.reps" in errors
    assert not Territory.objects.filter(plan=target).exists()
    target.refresh_from_db()
    assert target.version == 1


def test_unit_csv_errors_name_the_row(world, mapped):
    target = plan_create(name="Target", actor=world.planner)
    csv_bytes = b"unit_code,level,territory_code\nC00,county,A\nZZZ,county,A\nC01,planet,B\nC00,county,B\n"
    with pytest.raises(ApplicationError) as caught:
        plan_territories_import(plan=target, data=csv_bytes, actor=world.planner)
    assert set(caught.value.errors) == {"row 3.unit_code", "row 4.level", "row 5.unit_code"}


@pytest.mark.parametrize(
    "content", [b"", b"PK\x03\x04 not really a zip", b"SQLite format 3\x00garbage", b"{not json"]
)
def test_broken_files_fail_cleanly(world, content):
    target = plan_create(name="Target", actor=world.planner)
    response = import_file(client_for(world.planner), target, content, "upload.bin")
    assert response.status_code in (202, 400)
    if response.status_code == 202:
        assert response.json()["status"] == "failed"
    assert not Territory.objects.filter(plan=target).exists()


def test_only_planners_import(world, mapped):
    target = plan_create(name="Target", actor=world.planner)
    content = b"unit_code,level,territory_code\nC00,county,A\n"
    assert import_file(client_for(world.integration), target, content, "u.csv").status_code == 403
    assert (
        import_file(client_for(world.planner, scopes=["read"]), target, content, "u.csv").status_code == 403
    )


def test_polygons_take_units_by_representative_point_at_the_chosen_level(world, mapped):
    zip_unit = GeoUnitFactory(level="zip", code="Z1", geom=square(0.25, 0.25, 0.5))
    target = plan_create(name="Target", actor=world.planner)
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": "NEW", "name": "New"},
                # Covers the centres of the units at x 0..2, y 0..1, and the ZIP inside C00.
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 1], [0, 1], [0, 0]]]},
            }
        ],
    }
    summary = plan_territories_import(
        plan=target, data=json.dumps(collection).encode(), actor=world.planner, materialize=False
    )
    assert summary["territories_created"] == 1 and summary["units_assigned"] == 2
    assert mapping(target) == {"C00": "NEW", "C10": "NEW"}
    Plan.objects.filter(pk=target.pk).update(version=summary["version"])
    other = plan_create(name="Zips", actor=world.planner)
    plan_territories_import(
        plan=other, data=json.dumps(collection).encode(), unit_level="zip", materialize=False
    )
    assert mapping(other) == {zip_unit.code: "NEW"}


def test_import_materializes_accounts_from_the_new_geography(world, mapped):
    TerritoryFactory  # noqa: B018  (the world's accounts sit at (0.5, 0.5), inside unit C00)
    client = client_for(world.planner)
    target = plan_create(name="Target", actor=world.planner)
    job = import_file(client, target, export(client, world.plan, "gpkg").content, "t.gpkg").json()
    assert job["status"] == "succeeded", job
    assert job["report"]["materialize"]["accounts"] >= 8
    owners = set(target.account_assignments.values_list("territory__code", flat=True))
    assert owners == {"E-T1"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_plan_exports_an_empty_file(world, fmt):
    empty = plan_create(name="Empty", actor=world.planner)
    response = export(client_for(world.planner), empty, fmt)
    if fmt == "geojson":
        assert json.loads(response.content)["features"] == []
    elif fmt == "units-csv":
        assert response.content.decode().strip() == "unit_code,level,territory_code,unit_name"
    else:
        assert len(response.content) > 0

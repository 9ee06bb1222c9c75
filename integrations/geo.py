"""A plan's territories out to and in from GIS files: GeoJSON, zipped Shapefile, GeoPackage, and a
unit→territory CSV.

Export: one feature per visible territory with code, name, parent (the parent's code), level,
reps ("EXT-ID:role;…", primary first), color, unit_level and units (how many units it owns). A
leaf's geometry is the union of its units' full outlines, or the convex hull of its accounts when it
has no units (none when that hull is a point or a line); a parent's is the union of its children's.

Import into a draft plan: features become territories (parents by code, in the file or the plan),
and each leaf feature's polygon takes the geography units of one level whose representative point
(`GeoUnit.centroid`, a point inside the unit) lies inside it. Exporting a plan and importing the file
into a new draft plan therefore gives back the same unit → territory mapping.
"""

from __future__ import annotations

import csv
import io
import math
import re
import tempfile
import uuid
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Account, Rep
from territories.choices import (
    AssignmentRole,
    AssignmentSource,
    ChangeKind,
    MemberRole,
    PlanStatus,
    UnitLevel,
)
from territories.models import (
    AccountAssignment,
    Change,
    GeoUnit,
    Plan,
    Territory,
    TerritoryMembership,
    UnitAssignment,
)
from territories.selectors import territory_list
from territories.services import plan_check_version
from tessera_common.errors import ApplicationError

EXPORT_FORMATS = {
    # format: (media type, file suffix)
    "geojson": ("application/geo+json", "geojson"),
    "shapefile": ("application/zip", "zip"),
    "gpkg": ("application/geopackage+sqlite3", "gpkg"),
    "units-csv": ("text/csv", "csv"),
}
UNIT_CSV_COLUMNS = ["unit_code", "level", "territory_code", "unit_name"]
DEFAULT_COLOR = "#888888"
_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")
MAX_FEATURES = 20_000

Progress = Callable[[int, str], None]


# --- export ---------------------------------------------------------------------------------------


@dataclass
class ExportFile:
    content: bytes
    media_type: str
    file_name: str


def plan_territories_export(*, plan: Plan, user, export_format: str) -> ExportFile:
    """The plan's territories the user may see, in `export_format` (see EXPORT_FORMATS)."""
    if export_format not in EXPORT_FORMATS:
        raise ApplicationError(
            f"Unknown export format {export_format!r}; use {', '.join(EXPORT_FORMATS)}.",
            {"format": [f"use one of: {', '.join(EXPORT_FORMATS)}"]},
        )
    territories = list(territory_list(user=user, plan=plan).order_by("code"))
    media_type, suffix = EXPORT_FORMATS[export_format]
    name = f"plan-{plan.pk}-{'units' if export_format == 'units-csv' else 'territories'}.{suffix}"
    if export_format == "units-csv":
        return ExportFile(_units_csv(plan, territories), media_type, name)
    frame = _territory_frame(plan, territories)
    if export_format == "geojson":
        content = frame.to_json(drop_id=True, ensure_ascii=False).encode()
    elif export_format == "gpkg":
        content = _write_with_gdal(frame, "territories.gpkg", driver="GPKG")
    else:
        content = _write_with_gdal(frame, "territories.shp", driver="ESRI Shapefile")
    return ExportFile(content, media_type, name)


def _units_csv(plan: Plan, territories: list[Territory]) -> bytes:
    codes = {t.pk: t.code for t in territories}
    rows = (
        UnitAssignment.objects.filter(plan=plan, territory_id__in=list(codes))
        .order_by("unit__level", "unit__code")
        .values_list("unit__code", "unit__level", "territory_id", "unit__name")
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(UNIT_CSV_COLUMNS)
    for code, level, territory_id, name in rows:
        writer.writerow([code, level, codes[territory_id], name])
    return out.getvalue().encode("utf-8")


def _territory_frame(plan: Plan, territories: list[Territory]):
    import geopandas as gpd
    import shapely
    from shapely.ops import unary_union

    ids = [t.pk for t in territories]
    unit_table, ua_table = GeoUnit._meta.db_table, UnitAssignment._meta.db_table
    aa_table, account_table = AccountAssignment._meta.db_table, Account._meta.db_table
    shapes: dict[int, Any] = {}
    levels: dict[int, str] = {}
    unit_counts: dict[int, int] = {}
    with connection.cursor() as cursor:
        # Full outlines, not the simplified ones: the polygons must contain exactly their units'
        # representative points for an import to find the same units again.
        cursor.execute(
            f"""SELECT ua.territory_id, ST_AsBinary(ST_Multi(ST_Union(u.geom))),
                       string_agg(DISTINCT u.level, ','), count(*)
                FROM {ua_table} ua JOIN {unit_table} u ON u.id = ua.unit_id
                WHERE ua.plan_id = %s AND ua.territory_id = ANY(%s)
                GROUP BY ua.territory_id""",
            [plan.pk, ids],
        )
        for territory_id, wkb, level, count in cursor.fetchall():
            shapes[territory_id] = shapely.from_wkb(bytes(wkb))
            levels[territory_id] = level
            unit_counts[territory_id] = count
        cursor.execute(
            f"""SELECT aa.territory_id, ST_AsBinary(ST_ConvexHull(ST_Collect(a.location)))
                FROM {aa_table} aa JOIN {account_table} a ON a.id = aa.account_id
                WHERE aa.plan_id = %s AND aa.role = %s AND aa.territory_id = ANY(%s)
                  AND a.location IS NOT NULL
                GROUP BY aa.territory_id""",
            [plan.pk, AssignmentRole.PRIMARY, [i for i in ids if i not in shapes]],
        )
        for territory_id, wkb in cursor.fetchall():
            hull = shapely.from_wkb(bytes(wkb))
            # Fewer than three accounts, or all in a row, make no area: leave the geometry empty.
            if hull.geom_type == "Polygon":
                shapes[territory_id] = shapely.MultiPolygon([hull])

    by_id = {t.pk: t for t in territories}
    children: dict[int, list[int]] = {}
    for t in territories:
        if t.parent_id in by_id:
            children.setdefault(t.parent_id, []).append(t.pk)

    def shape_of(pk: int, depth: int = 0):
        if pk in shapes or pk not in children or depth > 50:
            return shapes.get(pk)
        parts = [s for s in (shape_of(c, depth + 1) for c in children[pk]) if s is not None]
        if parts:
            merged = unary_union(parts)
            shapes[pk] = merged if merged.geom_type == "MultiPolygon" else _as_multi(merged)
        return shapes.get(pk)

    reps: dict[int, list[str]] = {}
    memberships = (
        TerritoryMembership.objects.filter(territory_id__in=ids)
        .order_by("territory_id", "role", "rep__external_id")
        .values_list("territory_id", "rep__external_id", "role")
    )
    for territory_id, external_id, role in memberships:
        reps.setdefault(territory_id, []).append(f"{external_id}:{role}")

    records = []
    for t in territories:
        parent = by_id.get(t.parent_id) if t.parent_id else None
        if parent is None and t.parent_id:
            parent = t.parent  # outside the user's view: still name it
        records.append(
            {
                "code": t.code,
                "name": t.name,
                "parent": parent.code if parent else None,
                "level": t.level_name,
                "reps": ";".join(reps.get(t.pk, [])) or None,
                "color": t.color,
                "unit_level": levels.get(t.pk),
                "units": unit_counts.get(t.pk, 0),
                "geometry": shape_of(t.pk),
            }
        )
    columns = ["code", "name", "parent", "level", "reps", "color", "unit_level", "units"]
    frame = gpd.GeoDataFrame(
        {c: [r[c] for r in records] for c in columns},
        geometry=gpd.GeoSeries([r["geometry"] for r in records], crs="EPSG:4326"),
    )
    return frame.astype({"units": "int64"})


def _as_multi(geometry):
    import shapely

    polygons = [
        g for g in getattr(geometry, "geoms", [geometry]) if g.geom_type in ("Polygon", "MultiPolygon")
    ]
    flat = []
    for polygon in polygons:
        flat.extend(polygon.geoms if polygon.geom_type == "MultiPolygon" else [polygon])
    return shapely.MultiPolygon(flat) if flat else None


def _write_with_gdal(frame, file_name: str, *, driver: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tessera-export-") as directory:
        path = Path(directory) / file_name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # GDAL notes on field widths
            frame.to_file(
                path,
                driver=driver,
                engine="pyogrio",
                geometry_type="MultiPolygon",
                **({"layer": "territories"} if driver == "GPKG" else {"encoding": "UTF-8"}),
            )
        if driver == "GPKG":
            return path.read_bytes()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in sorted(Path(directory).iterdir()):
                archive.write(part, part.name)
        return out.getvalue()


# --- import ---------------------------------------------------------------------------------------


@dataclass
class _Feature:
    """One territory to create, as read from a file."""

    number: int
    code: str
    name: str
    parent: str
    level: str
    color: str
    reps: list[tuple[str, str]]
    unit_level: str
    geometry: Any = None
    unit_codes: list[tuple[str, str, int]] = field(default_factory=list)  # (level, code, row) from a CSV


def detect_format(data: bytes, file_name: str = "") -> str:
    """geojson, shapefile (a zip with a .shp), gpkg or units-csv, told apart by content."""
    head = data[:64].lstrip()
    if data.startswith(b"PK\x03\x04"):
        return "shapefile"
    if data.startswith(b"SQLite format 3\x00"):
        return "gpkg"
    if head.startswith(b"{") or head.startswith(b"\xef\xbb\xbf{"):
        return "geojson"
    return "units-csv"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_features(data: bytes, file_format: str) -> tuple[list[_Feature], dict[str, list[str]]]:
    import geopandas as gpd

    if file_format == "shapefile":
        with zipfile.ZipFile(io.BytesIO(data)) if _is_zip(data) else _bad_zip() as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".shp")]
        if len(names) != 1:
            raise ApplicationError(
                "A zipped Shapefile must hold exactly one .shp file (with its .shx, .dbf and .prj).",
                {"file": [f"found {len(names)} .shp files"]},
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = gpd.read_file(io.BytesIO(data), engine="pyogrio")
    except Exception as exc:  # GDAL raises its own error types for every kind of broken file
        raise ApplicationError(
            f"The {file_format} file cannot be read: {exc}", {"file": [f"not a readable {file_format} file"]}
        ) from None
    if len(frame) > MAX_FEATURES:
        raise ApplicationError(f"The file has {len(frame):,} features; the limit is {MAX_FEATURES:,}.")
    if frame.crs is not None and frame.crs.to_epsg() != 4326:
        try:
            frame = frame.to_crs(4326)
        except Exception as exc:
            raise ApplicationError(
                f"The file's coordinate system cannot be converted to WGS 84: {exc}"
            ) from None
    columns = {re.sub(r"[^a-z]", "", str(c).lower()): c for c in frame.columns if c != frame.geometry.name}

    def column(*aliases: str) -> str | None:
        return next((columns[a] for a in aliases if a in columns), None)

    code_col = column("code", "territorycode", "territory")
    if code_col is None:
        raise ApplicationError(
            "The features need a 'code' attribute (the territory code).",
            {"columns": [f"no code column; found: {', '.join(map(str, columns.values())) or 'none'}"]},
        )
    name_col = column("name", "territoryname")
    parent_col = column("parent", "parentcode")
    level_col = column("level", "levelname")
    color_col = column("color", "colour")
    reps_col = column("reps")
    unit_level_col = column("unitlevel")
    features, errors = [], {}
    for number, (_, row) in enumerate(frame.iterrows(), 1):
        where = f"feature {number}"
        geometry = row[frame.geometry.name]
        if not hasattr(geometry, "geom_type"):  # pandas gives NaN, not None, for a missing geometry
            geometry = None
        if geometry is not None and not geometry.is_empty:
            if geometry.geom_type not in ("Polygon", "MultiPolygon"):
                errors[f"{where}.geometry"] = [
                    f"must be a Polygon or MultiPolygon, not a {geometry.geom_type}"
                ]
                continue
            if not geometry.is_valid:
                geometry = geometry.buffer(0)  # repairs self-touching rings GIS tools commonly write
        else:
            geometry = None
        reps = []
        for item in filter(None, (p.strip() for p in (_text(row[reps_col]) if reps_col else "").split(";"))):
            external_id, _, role = item.partition(":")
            reps.append((external_id.strip(), (role.strip() or MemberRole.PRIMARY).lower()))
        features.append(
            _Feature(
                number=number,
                code=_text(row[code_col]),
                name=_text(row[name_col]) if name_col else "",
                parent=_text(row[parent_col]) if parent_col else "",
                level=_text(row[level_col]) if level_col else "",
                color=_text(row[color_col]) if color_col else "",
                reps=reps,
                unit_level=_text(row[unit_level_col]) if unit_level_col else "",
                geometry=geometry,
            )
        )
    return features, errors


def _is_zip(data: bytes) -> bool:
    return zipfile.is_zipfile(io.BytesIO(data))


def _bad_zip():
    raise ApplicationError("The zip archive is damaged.", {"file": ["not a readable zip file"]})


def _read_unit_csv(data: bytes) -> tuple[list[_Feature], dict[str, list[str]]]:
    from accounts.imports import header_key, read_csv_bytes

    table = read_csv_bytes(data)
    keys = [header_key(h) for h in table.headers]

    def index(*aliases: str) -> int | None:
        return next((keys.index(a) for a in aliases if a in keys), None)

    unit_i = index("unit code", "unit", "unit id", "geoid", "fips", "zip")
    level_i = index("level", "unit level")
    territory_i = index("territory code", "territory")
    if unit_i is None or territory_i is None:
        raise ApplicationError(
            "A unit→territory CSV needs the columns unit_code, level and territory_code.",
            {"columns": [f"found: {', '.join(table.headers)}"]},
        )
    by_code: dict[str, _Feature] = {}
    errors: dict[str, list[str]] = {}
    for number, cells in table.records:

        def cell(i: int | None, cells=cells) -> str:
            return _text(cells[i]) if i is not None and i < len(cells) else ""

        unit, territory = cell(unit_i), cell(territory_i)
        level = cell(level_i).lower()
        if not unit:
            errors[f"row {number}.unit_code"] = ["This field is required."]
            continue
        if not territory:
            errors[f"row {number}.territory_code"] = ["This field is required."]
            continue
        if level and level not in UnitLevel.values:
            errors[f"row {number}.level"] = [
                f"'{level}' is not a unit level; use {', '.join(UnitLevel.values)}"
            ]
            continue
        feature = by_code.get(territory)
        if feature is None:
            feature = by_code[territory] = _Feature(
                number=number, code=territory, name="", parent="", level="", color="", reps=[], unit_level=""
            )
        feature.unit_codes.append((level, unit, number))
    return list(by_code.values()), errors


def plan_territories_import(
    *,
    plan: Plan,
    data: bytes,
    file_name: str = "",
    actor=None,
    expected_version: int | None = None,
    unit_level: str | None = None,
    materialize: bool = True,
    progress: Progress | None = None,
) -> dict:
    """Create the file's territories in draft `plan` and assign units to its leaves (see the module
    docstring). All or nothing: any problem raises ApplicationError naming the feature (or CSV row)
    and field, and nothing is written. Recorded as Changes in one batch; bumps the plan version.
    `materialize` then rebuilds the plan's account assignments from the new geography."""
    report = progress or (lambda percent, message: None)
    if actor is not None and not getattr(actor, "can_plan", False):
        raise ApplicationError("Only planners and admins can import territories.", status=403)
    if unit_level and unit_level not in UnitLevel.values:
        raise ApplicationError(
            f"Unknown unit level {unit_level!r}.",
            {"unit_level": [f"use one of {', '.join(UnitLevel.values)}"]},
        )
    file_format = detect_format(data, file_name)
    report(5, f"Reading the {file_format} file")
    if file_format == "units-csv":
        features, errors = _read_unit_csv(data)
    else:
        features, errors = _read_features(data, file_format)
    if not features and not errors:
        raise ApplicationError("The file has no territories.", {"file": ["no features"]})

    with transaction.atomic():
        plan = Plan.objects.select_for_update().get(pk=plan.pk)
        plan_check_version(plan=plan, expected_version=expected_version)
        if plan.status != PlanStatus.DRAFT:
            raise ApplicationError(
                f"Territories can be imported into a draft plan only; '{plan.name}' is "
                f"{plan.get_status_display().lower()}. Clone it and import into the clone.",
                {"plan": ["must be a draft"]},
            )
        report(15, "Checking territories")
        existing = {t.code: t for t in Territory.objects.filter(plan=plan)}
        level_for_polygons = unit_level or _common_unit_level(features)
        _check_features(features, existing, errors)
        rep_ids = _check_reps(features, errors)
        report(30, "Finding units")
        units_by_feature = (
            _units_from_codes(features, level_for_polygons, errors)
            if file_format == "units-csv"
            else _units_in_polygons(features, level_for_polygons)
        )
        if errors:
            raise ApplicationError(
                f"Nothing was imported: {len(errors)} problem(s) in the file.", dict(sorted(errors.items()))
            )
        report(50, "Writing territories")
        summary = _write(plan, features, existing, rep_ids, units_by_feature, actor)
        summary["unit_level"] = level_for_polygons if file_format != "units-csv" else None
        summary["format"] = file_format
        if materialize:
            from territories.services import plan_materialize

            report(75, "Assigning accounts from the new geography")
            result = plan_materialize(plan=plan, actor=actor)
            summary["materialize"] = result.as_dict() if hasattr(result, "as_dict") else None
            plan.refresh_from_db()
            summary["version"] = plan.version
    report(100, "Done")
    return summary


def _common_unit_level(features: list[_Feature]) -> str:
    counts = Counter(f.unit_level for f in features if f.unit_level in UnitLevel.values)
    return counts.most_common(1)[0][0] if counts else UnitLevel.COUNTY.value


def _check_features(features: list[_Feature], existing: dict[str, Territory], errors: dict) -> None:
    seen: dict[str, int] = {}
    in_file = {f.code for f in features}
    for f in features:
        where = f"feature {f.number}" if not f.unit_codes else f"row {f.number}"
        if not f.code:
            errors[f"{where}.code"] = ["This field is required."]
            continue
        if len(f.code) > 50:
            errors[f"{where}.code"] = ["Use at most 50 characters."]
        if f.code in seen:
            errors[f"{where}.code"] = [f"'{f.code}' is also feature {seen[f.code]}'s code."]
        seen.setdefault(f.code, f.number)
        if f.code in existing and not f.unit_codes:
            errors[f"{where}.code"] = [f"The plan already has a territory '{f.code}'."]
        f.name = f.name or f.code
        if len(f.name) > 200:
            errors[f"{where}.name"] = ["Use at most 200 characters."]
        if len(f.level) > 50:
            errors[f"{where}.level"] = ["Use at most 50 characters."]
        if f.color and not _HEX.match(f.color):
            errors[f"{where}.color"] = [f"'{f.color}' is not a #rrggbb colour."]
        if f.parent and f.parent not in in_file and f.parent not in existing:
            errors[f"{where}.parent"] = [f"No territory has the code '{f.parent}', in the file or the plan."]
        if f.parent == f.code and f.code:
            errors[f"{where}.parent"] = ["A territory cannot be its own parent."]
    parent_of = {f.code: f.parent for f in features if f.parent}
    for f in features:
        node, steps = f.parent, 0
        while node and node in parent_of and steps <= len(parent_of):
            if node == f.code:
                errors[f"feature {f.number}.parent"] = ["The parents make a loop."]
                break
            node, steps = parent_of[node], steps + 1
    parents = {f.parent for f in features if f.parent}
    parent_codes = set(
        Territory.objects.filter(
            children__isnull=False, pk__in=[t.pk for t in existing.values()]
        ).values_list("code", flat=True)
    )
    for f in features:
        if f.unit_codes and (f.code in parents or f.code in parent_codes):
            errors[f"row {f.number}.territory_code"] = [
                f"'{f.code}' has child territories; units belong to leaf territories only."
            ]
    for code in parents & set(existing):
        if (
            UnitAssignment.objects.filter(territory=existing[code]).exists()
            or AccountAssignment.objects.filter(territory=existing[code]).exists()
        ):
            where = next(f for f in features if f.parent == code)
            errors[f"feature {where.number}.parent"] = [
                f"'{code}' owns units or accounts; it cannot become a parent."
            ]


def _check_reps(features: list[_Feature], errors: dict) -> dict[str, int]:
    wanted = {external_id for f in features for external_id, _ in f.reps}
    known = dict(Rep.objects.filter(external_id__in=wanted).values_list("external_id", "pk"))
    for f in features:
        for external_id, role in f.reps:
            if external_id not in known:
                errors.setdefault(f"feature {f.number}.reps", []).append(
                    f"No rep has the external id '{external_id}'."
                )
            if role not in MemberRole.values:
                errors.setdefault(f"feature {f.number}.reps", []).append(
                    f"'{role}' is not a role; use {', '.join(MemberRole.values)}."
                )
    return known


def _units_in_polygons(features: list[_Feature], level: str) -> dict[str, list[int]]:
    """Units of `level` whose representative point lies in each leaf feature's polygon, found in one
    spatial join. A unit inside two overlapping polygons goes to the first feature in the file."""
    parents = {f.parent for f in features if f.parent}
    leaves = [f for f in features if f.code not in parents and f.geometry is not None and f.code]
    if not leaves:
        return {}
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE tessera_import_shapes (n int, geom geometry) ON COMMIT DROP")
        cursor.executemany(
            "INSERT INTO tessera_import_shapes VALUES (%s, ST_GeomFromWKB(%s, 4326))",
            [(i, f.geometry.wkb) for i, f in enumerate(leaves)],
        )
        cursor.execute("CREATE INDEX ON tessera_import_shapes USING gist (geom)")
        cursor.execute(
            f"""SELECT DISTINCT ON (u.id) u.id, s.n
                FROM tessera_import_shapes s
                JOIN {GeoUnit._meta.db_table} u ON u.level = %s AND ST_Intersects(u.centroid, s.geom)
                ORDER BY u.id, s.n""",
            [level],
        )
        found: dict[str, list[int]] = {}
        for unit_id, n in cursor.fetchall():
            found.setdefault(leaves[n].code, []).append(unit_id)
        cursor.execute("DROP TABLE tessera_import_shapes")
    return found


def _units_from_codes(features: list[_Feature], default_level: str, errors: dict) -> dict[str, list[int]]:
    wanted = {(level or default_level, code) for f in features for level, code, _ in f.unit_codes}
    codes = {code for _, code in wanted}
    known = {
        (level, code): pk
        for pk, level, code in GeoUnit.objects.filter(code__in=codes).values_list("pk", "level", "code")
    }
    found: dict[str, list[int]] = {}
    first_row: dict[int, int] = {}
    for f in features:
        for level, code, row in f.unit_codes:
            pk = known.get((level or default_level, code))
            if pk is None:
                errors[f"row {row}.unit_code"] = [f"No {level or default_level} unit has the code '{code}'."]
                continue
            if pk in first_row:
                errors[f"row {row}.unit_code"] = [f"Unit '{code}' is also on row {first_row[pk]}."]
                continue
            first_row[pk] = row
            found.setdefault(f.code, []).append(pk)
    return found


def _write(
    plan: Plan,
    features: list[_Feature],
    existing: dict[str, Territory],
    rep_ids: dict[str, int],
    units_by_feature: dict[str, list[int]],
    actor,
) -> dict:
    batch = uuid.uuid4()
    plan.version += 1
    version = plan.version
    Plan.objects.filter(pk=plan.pk).update(version=version, updated=timezone.now())
    territories = dict(existing)
    created = []
    pending = [f for f in features if f.code not in existing]
    while pending:
        remaining = []
        for f in pending:
            if f.parent and f.parent not in territories:
                remaining.append(f)
                continue
            territory = Territory.objects.create(
                plan=plan,
                parent=territories.get(f.parent) if f.parent else None,
                code=f.code,
                name=f.name,
                level_name=f.level or "territory",
                color=f.color or DEFAULT_COLOR,
            )
            territories[f.code] = territory
            created.append(territory)
        if len(remaining) == len(pending):  # the loop check above makes this unreachable
            raise ApplicationError("The parents make a loop.")
        pending = remaining
    changes = [
        Change(
            plan=plan,
            actor=actor,
            kind=ChangeKind.TERRITORY_CREATED,
            batch=batch,
            territory_to=t,
            plan_version=version,
            payload={
                "code": t.code,
                "name": t.name,
                "parent": t.parent.code if t.parent else None,
                "import": True,
            },
        )
        for t in created
    ]
    TerritoryMembership.objects.bulk_create(
        TerritoryMembership(territory=territories[f.code], rep_id=rep_ids[external_id], role=role)
        for f in features
        for external_id, role in dict(f.reps).items()
    )
    assigned = 0
    current = {
        ua.unit_id: ua
        for ua in UnitAssignment.objects.filter(
            plan=plan, unit_id__in=[u for ids in units_by_feature.values() for u in ids]
        )
    }
    new_rows, moved = [], []
    for code, unit_ids in units_by_feature.items():
        territory = territories[code]
        for unit_id in unit_ids:
            was = current.get(unit_id)
            if was is not None and was.territory_id == territory.pk:
                continue
            if was is not None:
                was.territory = territory
                was.source = AssignmentSource.MANUAL
                moved.append(was)
            else:
                new_rows.append(
                    UnitAssignment(
                        plan=plan, unit_id=unit_id, territory=territory, source=AssignmentSource.MANUAL
                    )
                )
            changes.append(
                Change(
                    plan=plan,
                    actor=actor,
                    kind=ChangeKind.UNIT_MOVED,
                    batch=batch,
                    unit_id=unit_id,
                    territory_from_id=was.territory_id if was is not None else None,
                    territory_to=territory,
                    plan_version=version,
                    payload={"import": True},
                )
            )
            assigned += 1
    UnitAssignment.objects.bulk_create(new_rows, batch_size=5000)
    UnitAssignment.objects.bulk_update(moved, ["territory", "source", "updated"], batch_size=5000)
    Change.objects.bulk_create(changes, batch_size=5000)
    return {
        "territories_created": len(created),
        "units_assigned": assigned,
        "batch": str(batch),
        "version": version,
        "territories": [
            {"code": f.code, "units": len(units_by_feature.get(f.code, []))} for f in features if f.code
        ],
    }

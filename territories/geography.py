"""Loading the US geography shipped in data/geo into GeoUnits (states, counties, optional ZIP cells),
their adjacency, and the ZIP centroid table used for offline geocoding.

Rows are upserted keyed by (level, code), so a second run updates in place and keeps ids (plans refer
to units by id). Bulk data goes through COPY into temporary tables and one INSERT ... ON CONFLICT,
with geometries as EWKB built by shapely: no value is ever formatted into SQL.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from psycopg import sql
from tqdm import tqdm

from accounts.models import PostalCode
from tessera_common.errors import ApplicationError

from . import geodata
from .choices import UnitLevel
from .models import AccountAssignment, Change, GeoUnit, UnitAssignment

TOPOJSON_FILE = "us-atlas-counties-10m.json.gz"
ZIP_CENTROIDS_FILE = "zip_centroids.csv.gz"
COUNTY_NAMES_FILE = "us_county_names.csv.gz"
ZIP_COLUMNS = ("zip", "lat", "lon", "city", "state", "county", "type", "active")
# Active street-delivery ZIPs seed the cells; PO-box and single-organization ZIPs sit at a post office
# or a building inside some street ZIP, and as seeds they would carve slivers out of it.
SEED_ZIP_TYPES = frozenset({"STANDARD"})
# Coastal ZIP centroids can fall just offshore of the 1:10M coastline: within ~10 km they still seed
# a cell in the nearest county.
SEED_MAX_OFFSHORE_DEG = 0.1

# Arbitrary constant naming the advisory lock that serializes geography loads.
LOAD_LOCK_KEY = 7_146_001

_ZIP_CODE = re.compile(r"^\d{5}$")


def default_data_dir() -> Path:
    """Where the shipped geography files live (data/geo in the repository)."""
    return Path(settings.BASE_DIR) / "data" / "geo"


@dataclass(frozen=True)
class ZipCentroid:
    """One row of zip_centroids.csv.gz."""

    code: str
    lat: float
    lon: float
    city: str
    state: str
    county: str
    type: str
    active: bool


@dataclass
class GeographyLoadSummary:
    """What a load did: row counts by stage, seconds by stage, and everything it could not load."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_zip_centroids(path: Path) -> list[ZipCentroid]:
    """Parse and check zip_centroids.csv.gz; a bad row raises ApplicationError naming row and field."""
    max_city = PostalCode._meta.get_field("city").max_length
    max_county = PostalCode._meta.get_field("county_name").max_length
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(ZIP_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ApplicationError(f"{path.name}: missing columns {', '.join(sorted(missing))}.")
        rows, seen = [], set()
        for number, row in enumerate(reader, start=2):

            def fail(column: str, problem: str, number: int = number) -> ApplicationError:
                return ApplicationError(
                    f"{path.name} row {number}: {column} {problem}.", errors={"row": number, "field": column}
                )

            code = row["zip"]
            if not _ZIP_CODE.match(code or ""):
                raise fail("zip", f"{code!r} is not a five-digit ZIP")
            if code in seen:
                raise fail("zip", f"{code} appears twice")
            seen.add(code)
            try:
                lat, lon = float(row["lat"]), float(row["lon"])
            except ValueError:
                raise fail("lat/lon", "is not a number") from None
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise fail("lat/lon", f"({lat}, {lon}) is outside the globe")
            if len(row["state"]) != 2:
                raise fail("state", f"{row['state']!r} is not a two-letter code")
            if len(row["city"]) > max_city:
                raise fail("city", f"is longer than {max_city} characters")
            if len(row["county"]) > max_county:
                raise fail("county", f"is longer than {max_county} characters")
            if row["active"] not in ("0", "1"):
                raise fail("active", f"{row['active']!r} is not 0 or 1")
            rows.append(
                ZipCentroid(
                    code=code, lat=lat, lon=lon, city=row["city"], state=row["state"], county=row["county"],
                    type=row["type"], active=row["active"] == "1",
                )
            )  # fmt: skip
    return rows


def read_county_names(path: Path) -> dict[str, str]:
    """Full county names by five-digit FIPS ('06037' → 'Los Angeles County')."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return {row["fips"]: row["name"] for row in csv.DictReader(handle)}


def county_display_name(fips: str, short_name: str, full_names: dict[str, str]) -> str:
    """'Los Angeles County, CA'; the short us-atlas name when no full name is known ('Valdez-Cordova, AK')."""
    abbr = geodata.STATE_ABBR_BY_FIPS[fips[:2]]
    return f"{full_names.get(fips) or short_name}, {abbr}"


@transaction.atomic
def geography_load(
    *,
    zip_states: Sequence[str] | None = None,
    postal_codes: bool = True,
    data_dir: Path | None = None,
    progress: bool = False,
) -> GeographyLoadSummary:
    """Load states, counties and their adjacency; the ZIP centroid table unless `postal_codes` is
    False; and ZIP-level units (Voronoi cells of ZIP centroids clipped to counties) for the states in
    `zip_states` (USPS abbreviations). Idempotent: units are updated in place by (level, code), and
    the adjacency of the levels (or, for ZIP units, the states) being loaded is replaced."""
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    summary = GeographyLoadSummary()
    with connection.cursor() as cursor:
        # Two loads at once would interleave adjacency deletes and inserts: the second one waits.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOAD_LOCK_KEY])
    if zip_states is not None:
        unknown = sorted(set(zip_states) - set(geodata.STATE_FIPS_BY_ABBR))
        if unknown:
            raise ApplicationError(
                f"Unknown state abbreviation(s) for ZIP units: {', '.join(unknown)}.",
                errors={"zip_states": unknown},
            )

    with _stage(summary, "read"):
        topology = geodata.read_topojson(data_dir / TOPOJSON_FILE)
        arcs = geodata.decode_arcs(topology)
        states = geodata.topology_features(topology, "states", arcs)
        counties = geodata.topology_features(topology, "counties", arcs)
        full_names = read_county_names(data_dir / COUNTY_NAMES_FILE)
        centroids = read_zip_centroids(data_dir / ZIP_CENTROIDS_FILE) if postal_codes or zip_states else []
    states = _loadable(states, "state", 2, summary)
    counties = _loadable(counties, "county", 5, summary)

    with _stage(summary, "states"):
        rows = [
            _unit_row(
                UnitLevel.STATE, f.id, f.name, None, f.geometry,
                {"state_fips": f.id, "state_abbr": geodata.STATE_ABBR_BY_FIPS[f.id]},
            )
            for f in states
        ]  # fmt: skip
        _count(summary, "states", _upsert_units(rows, progress=progress, label="states"))
    with _stage(summary, "counties"):
        rows = [
            _unit_row(
                UnitLevel.COUNTY, f.id, county_display_name(f.id, f.name, full_names),
                (UnitLevel.STATE, f.id[:2]), f.geometry,
                {
                    "state_fips": f.id[:2], "state_abbr": geodata.STATE_ABBR_BY_FIPS[f.id[:2]],
                    "short_name": f.name,
                },
            )
            for f in tqdm(counties, desc="counties", unit="county", disable=not progress, file=sys.stderr)
        ]  # fmt: skip
        _count(summary, "counties", _upsert_units(rows, progress=progress, label="counties"))
    with _stage(summary, "adjacency"):
        for level, features in ((UnitLevel.STATE, states), (UnitLevel.COUNTY, counties)):
            pairs = geodata.arc_adjacency(features)
            _clear_level_adjacency(level)
            summary.counts[f"{level}_adjacent_pairs"] = _insert_adjacency(level, pairs)

    if postal_codes:
        with _stage(summary, "postal_codes"):
            _count(summary, "postal_codes", _upsert_postal_codes(centroids, progress=progress))
            summary.counts["postal_codes_in_table"] = PostalCode.objects.count()

    if zip_states:
        with _stage(summary, "zip_units"):
            _load_zip_units(zip_states, counties, centroids, full_names, summary, progress)
    return summary


def _loadable(features: list[geodata.TopoFeature], level: str, digits: int, summary: GeographyLoadSummary):
    """The features that can become units; the others are named in the summary's warnings."""
    kept = []
    for feature in features:
        if not feature.id or len(feature.id) != digits or not feature.id.isdigit():
            raise ApplicationError(f"{level} feature {feature.id!r} has no {digits}-digit FIPS id.")
        if feature.id[:2] not in geodata.STATE_ABBR_BY_FIPS:
            raise ApplicationError(
                f"{level} {feature.id} ({feature.name}): unknown state FIPS {feature.id[:2]}."
            )
        if feature.geometry.is_empty:
            summary.warnings.append(
                f"{level} {feature.id} ({feature.name}) has no area at 1:10M and was not loaded; "
                "its accounts fall in the neighbouring units."
            )
            continue
        kept.append(feature)
    degenerate = sum(f.degenerate_rings for f in features)
    if degenerate:
        summary.counts[f"{level}_collapsed_rings"] = degenerate
    return kept


def _unit_row(level, code, name, parent, geometry, attributes) -> tuple:
    return (level, code, name, parent, geometry, geodata.simplify_for_display(geometry), attributes)


def _load_zip_units(zip_states, counties, centroids, full_names, summary, progress) -> None:
    wanted_fips = {geodata.STATE_FIPS_BY_ABBR[abbr] for abbr in zip_states}
    county_by_code = {f.id: f for f in counties}
    selected = {f.id: f.geometry for f in counties if f.id[:2] in wanted_fips}
    seeds = [c for c in centroids if c.active]
    points = np.array([(c.lon, c.lat) for c in seeds], dtype=float).reshape(-1, 2)
    # Place every seed against all counties, so a seed just across a state line is never pulled
    # into the nearest selected county.
    all_codes = [f.id for f in counties]
    placed = geodata.assign_points(points, [f.geometry for f in counties], max_distance=SEED_MAX_OFFSHORE_DEG)
    parent_of = [all_codes[index] if index >= 0 else None for index in placed]
    # Counties served only by PO-box or single-organization ZIPs (much of rural Alaska) take those
    # as seeds rather than becoming one ZIP-less unit.
    with_street_zips = {p for seed, p in zip(seeds, parent_of, strict=True) if seed.type in SEED_ZIP_TYPES}
    # A seed in no county is reported with the states asked for, and with a load of all states
    # when its state has no boundaries at all (Palau, Marshall Islands, Micronesia).
    every_state = set(geodata.STATE_FIPS_BY_ABBR) <= set(zip_states)
    ids, parents, chosen = [], [], []
    for seed, parent in zip(seeds, parent_of, strict=True):
        if parent is None:
            keep = seed.type in SEED_ZIP_TYPES and (
                seed.state in zip_states or (every_state and seed.state not in geodata.STATE_FIPS_BY_ABBR)
            )
        else:
            keep = parent in selected and (seed.type in SEED_ZIP_TYPES or parent not in with_street_zips)
        if keep:
            ids.append(seed.code)
            parents.append(parent)
            chosen.append(seed)
    bar = tqdm(total=len(selected), desc="ZIP cells", unit="county", disable=not progress, file=sys.stderr)
    with bar:
        result = geodata.zip_voronoi_cells(
            np.array([(s.lon, s.lat) for s in chosen], dtype=float).reshape(-1, 2), ids, selected,
            parents=parents, on_progress=bar.update,
        )  # fmt: skip
    by_code = {c.code: c for c in centroids}
    rows = []
    for cell in result.cells:
        state_fips = cell.parent[:2]
        attributes = {
            "county_fips": cell.parent,
            "state_fips": state_fips,
            "state_abbr": geodata.STATE_ABBR_BY_FIPS[state_fips],
            "zips": list(cell.members),
        }
        if cell.members:
            first = by_code[cell.code]
            name = f"{cell.code} {first.city}, {first.state}"
        else:
            county = county_by_code[cell.parent]
            name = f"{county_display_name(cell.parent, county.name, full_names)} (no ZIP centroid)"
        rows.append(
            _unit_row(
                UnitLevel.ZIP, cell.code, name, (UnitLevel.COUNTY, cell.parent), cell.geometry, attributes
            )
        )
    _count(summary, "zip_units", _upsert_units(rows, progress=progress, label="ZIP units"))
    summary.counts["zip_seeds"] = len(chosen) - len(result.unplaced)
    summary.counts["zip_shared_locations"] = sum(len(c.members) - 1 for c in result.cells if c.members)
    summary.counts["zip_units_without_zip"] = sum(1 for c in result.cells if not c.members)
    if result.unplaced:
        examples = ", ".join(f"{code} ({why})" for code, why in sorted(result.unplaced.items())[:5])
        summary.warnings.append(f"{len(result.unplaced)} ZIP centroid(s) seeded no cell, e.g. {examples}.")

    new_codes = [cell.code for cell in result.cells]
    removed, kept = _remove_stale_zip_units(list(selected), new_codes)
    summary.counts["zip_units_removed"] = removed
    if kept:
        summary.warnings.append(
            f"{kept} ZIP unit(s) stored in these counties are not in this load but plans or the change "
            "log refer to them; they were kept and overlap the new cells until those plans move on."
        )

    # Stored ZIP units of neighbouring counties outside the selection take part in the adjacency,
    # so loading state by state still links cells across state lines.
    neighbour_counties = {
        b if a in selected else a
        for a, b in geodata.arc_adjacency(counties)
        if (a in selected) != (b in selected)
    }
    outside = list(
        GeoUnit.objects.filter(
            level=UnitLevel.ZIP, parent__level=UnitLevel.COUNTY, parent__code__in=neighbour_counties
        ).values_list("code", "geom")
    )
    geometries = [cell.geometry for cell in result.cells] + [
        shapely.from_wkb(bytes(g.wkb)) for _, g in outside
    ]
    codes = new_codes + [code for code, _ in outside]
    flags = [True] * len(new_codes) + [False] * len(outside)
    pairs = geodata.polygon_adjacency(geometries, codes, only=flags)
    _clear_zip_adjacency(list(selected))
    summary.counts["zip_adjacent_pairs"] = _insert_adjacency(UnitLevel.ZIP, pairs)


def _remove_stale_zip_units(county_codes: list[str], current_codes: list[str]) -> tuple[int, int]:
    """Delete ZIP units of these counties that this load did not produce (the data changed), unless
    something refers to them: deleting would cascade into plans, and the change log is append-only."""
    stale = GeoUnit.objects.filter(
        level=UnitLevel.ZIP, parent__level=UnitLevel.COUNTY, parent__code__in=county_codes
    ).exclude(code__in=current_codes)
    referenced = (
        Exists(UnitAssignment.objects.filter(unit=OuterRef("pk")))
        | Exists(AccountAssignment.objects.filter(unit=OuterRef("pk")))
        | Exists(Change.objects.filter(unit=OuterRef("pk")))
    )
    removable = list(stale.exclude(referenced).values_list("pk", flat=True))
    kept = stale.count() - len(removable)
    if removable:
        GeoUnit.objects.filter(pk__in=removable).delete()
    return len(removable), kept


@contextmanager
def _stage(summary: GeographyLoadSummary, name: str):
    started = time.perf_counter()
    yield
    summary.seconds[name] = round(time.perf_counter() - started, 2)


def _count(summary: GeographyLoadSummary, name: str, created_updated: tuple[int, int]) -> None:
    summary.counts[f"{name}_created"], summary.counts[f"{name}_updated"] = created_updated


@contextmanager
def _raw_cursor():
    """The psycopg cursor under Django's wrapper: COPY and psycopg.sql composition need it. It runs
    on Django's connection, so inside the caller's transaction."""
    with connection.cursor() as wrapper:
        yield wrapper.cursor


def _ewkb_hex(geometries: Iterable) -> list[str]:
    array = shapely.set_srid(np.asarray(list(geometries), dtype=object), 4326)
    return list(shapely.to_wkb(array, hex=True, include_srid=True))


def _upsert_units(rows: list[tuple], *, progress: bool, label: str) -> tuple[int, int]:
    """COPY units into a temp table and upsert them by (level, code); returns (created, updated)."""
    if not rows:
        return 0, 0
    for level, code, _name, _parent, geometry, simplified, _attrs in rows:
        for what, geom in (("geometry", geometry), ("display geometry", simplified)):
            if geom.is_empty or not geom.is_valid or geom.geom_type != "MultiPolygon":
                raise ApplicationError(
                    f"{level} {code}: the {what} is not a valid, non-empty MultiPolygon.",
                    errors={"code": code},
                )
    full = _ewkb_hex(r[4] for r in rows)
    simple = _ewkb_hex(r[5] for r in rows)
    table = sql.Identifier(GeoUnit._meta.db_table)
    with _raw_cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS tessera_unit_stage")
        cursor.execute(
            """CREATE TEMP TABLE tessera_unit_stage (
                   level text NOT NULL, code text NOT NULL, name text NOT NULL,
                   parent_level text, parent_code text,
                   geom geometry(MultiPolygon, 4326) NOT NULL,
                   geom_simplified geometry(MultiPolygon, 4326) NOT NULL,
                   attributes jsonb NOT NULL
               ) ON COMMIT DROP"""
        )
        with cursor.copy(
            "COPY tessera_unit_stage (level, code, name, parent_level, parent_code, geom, geom_simplified,"
            " attributes) FROM STDIN"
        ) as copy:
            for row, geom_hex, simple_hex in tqdm(
                zip(rows, full, simple, strict=True), total=len(rows), desc=f"write {label}", unit="unit",
                disable=not progress, file=sys.stderr,
            ):  # fmt: skip
                level, code, name, parent, _g, _s, attributes = row
                parent_level, parent_code = parent if parent else (None, None)
                values = (level, code, name, parent_level, parent_code, geom_hex, simple_hex)
                copy.write_row((*values, json.dumps(attributes)))
        cursor.execute("ANALYZE tessera_unit_stage")
        cursor.execute(
            sql.SQL(
                """SELECT s.level, s.code, s.parent_level, s.parent_code FROM tessera_unit_stage s
                   LEFT JOIN {unit} p ON p.level = s.parent_level AND p.code = s.parent_code
                   WHERE s.parent_code IS NOT NULL AND p.id IS NULL LIMIT 5"""
            ).format(unit=table)
        )
        orphans = cursor.fetchall()
        if orphans:
            listed = ", ".join(f"{lvl} {code} (parent {plvl} {pcode})" for lvl, code, plvl, pcode in orphans)
            raise ApplicationError(f"Units whose parent is not loaded: {listed}.")
        cursor.execute(
            sql.SQL(
                """INSERT INTO {unit} AS u (created, updated, level, code, name, parent_id, geom,
                                            geom_simplified, centroid, area_sq_km, attributes)
                   SELECT now(), now(), s.level, s.code, s.name, p.id, s.geom, s.geom_simplified,
                          ST_PointOnSurface(s.geom), ST_Area(s.geom::geography) / 1e6, s.attributes
                   FROM tessera_unit_stage s
                   LEFT JOIN {unit} p ON p.level = s.parent_level AND p.code = s.parent_code
                   -- one row order for every writer, so concurrent upserts queue instead of deadlocking
                   ORDER BY s.level, s.code
                   ON CONFLICT (level, code) DO UPDATE SET
                       updated = now(), name = EXCLUDED.name, parent_id = EXCLUDED.parent_id,
                       geom = EXCLUDED.geom, geom_simplified = EXCLUDED.geom_simplified,
                       centroid = EXCLUDED.centroid, area_sq_km = EXCLUDED.area_sq_km,
                       -- merge: population or potential figures loaded by others stay
                       attributes = u.attributes || EXCLUDED.attributes
                   RETURNING (xmax = 0)"""
            ).format(unit=table)
        )
        inserted = [flag for (flag,) in cursor.fetchall()]
        return sum(inserted), len(inserted) - sum(inserted)


def _through():
    through = GeoUnit.adjacent.through
    return (
        sql.Identifier(through._meta.db_table),
        sql.Identifier(through._meta.get_field("from_geounit").column),
        sql.Identifier(through._meta.get_field("to_geounit").column),
    )


def _clear_level_adjacency(level: str) -> None:
    table, from_col, to_col = _through()
    with _raw_cursor() as cursor:
        cursor.execute(
            sql.SQL(
                """DELETE FROM {through} t USING {unit} a, {unit} b
               WHERE t.{from_col} = a.id AND t.{to_col} = b.id AND a.level = %s AND b.level = %s"""
            ).format(
                through=table, unit=sql.Identifier(GeoUnit._meta.db_table), from_col=from_col, to_col=to_col
            ),
            [level, level],
        )


def _clear_zip_adjacency(county_codes: list[str]) -> None:
    """Drop every ZIP–ZIP link that touches a ZIP unit of these counties (both directions)."""
    table, from_col, to_col = _through()
    with _raw_cursor() as cursor:
        cursor.execute(
            sql.SQL(
                """WITH mine AS (
                   SELECT z.id FROM {unit} z JOIN {unit} c ON c.id = z.parent_id
                   WHERE z.level = %s AND c.level = %s AND c.code = ANY(%s)
               ), zips AS (SELECT id FROM {unit} WHERE level = %s)
               DELETE FROM {through} t
               WHERE (t.{from_col} IN (SELECT id FROM mine) AND t.{to_col} IN (SELECT id FROM zips))
                  OR (t.{to_col} IN (SELECT id FROM mine) AND t.{from_col} IN (SELECT id FROM zips))"""
            ).format(
                through=table, unit=sql.Identifier(GeoUnit._meta.db_table), from_col=from_col, to_col=to_col
            ),
            [UnitLevel.ZIP, UnitLevel.COUNTY, county_codes, UnitLevel.ZIP],
        )


def _insert_adjacency(level: str, pairs: list[tuple[str, str]]) -> int:
    """Store each pair of codes in both directions (Django's symmetrical M2M expects both rows)."""
    if not pairs:
        return 0
    table, from_col, to_col = _through()
    with _raw_cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS tessera_adjacency_stage")
        cursor.execute(
            "CREATE TEMP TABLE tessera_adjacency_stage (a text NOT NULL, b text NOT NULL) ON COMMIT DROP"
        )
        with cursor.copy("COPY tessera_adjacency_stage (a, b) FROM STDIN") as copy:
            for pair in pairs:
                copy.write_row(pair)
        # Temp tables have no statistics; without them the planner picks nested loops over 100k pairs.
        cursor.execute("ANALYZE tessera_adjacency_stage")
        cursor.execute(
            sql.SQL(
                """SELECT s.a, s.b FROM tessera_adjacency_stage s
                   LEFT JOIN {unit} ua ON ua.level = %s AND ua.code = s.a
                   LEFT JOIN {unit} ub ON ub.level = %s AND ub.code = s.b
                   WHERE ua.id IS NULL OR ub.id IS NULL LIMIT 5"""
            ).format(unit=sql.Identifier(GeoUnit._meta.db_table)),
            [level, level],
        )
        missing = cursor.fetchall()
        if missing:
            raise ApplicationError(f"Adjacency between {level} units that are not stored: {missing}.")
        cursor.execute(
            sql.SQL(
                """INSERT INTO {through} ({from_col}, {to_col})
                   SELECT x.from_id, x.to_id FROM (
                       SELECT ua.id AS from_id, ub.id AS to_id FROM tessera_adjacency_stage s
                       JOIN {unit} ua ON ua.level = %s AND ua.code = s.a
                       JOIN {unit} ub ON ub.level = %s AND ub.code = s.b
                       UNION ALL
                       SELECT ub.id, ua.id FROM tessera_adjacency_stage s
                       JOIN {unit} ua ON ua.level = %s AND ua.code = s.a
                       JOIN {unit} ub ON ub.level = %s AND ub.code = s.b
                   ) x
                   ON CONFLICT DO NOTHING"""
            ).format(
                through=table, unit=sql.Identifier(GeoUnit._meta.db_table), from_col=from_col, to_col=to_col
            ),
            [level, level, level, level],
        )
        return len(pairs)


def _upsert_postal_codes(centroids: list[ZipCentroid], *, progress: bool) -> tuple[int, int]:
    """COPY the ZIP centroids into a temp table and upsert them by code; returns (created, updated)."""
    with _raw_cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS tessera_postal_stage")
        cursor.execute(
            """CREATE TEMP TABLE tessera_postal_stage (
                   code text NOT NULL, lon float8 NOT NULL, lat float8 NOT NULL,
                   city text NOT NULL, state text NOT NULL, county_name text NOT NULL
               ) ON COMMIT DROP"""
        )
        with cursor.copy(
            "COPY tessera_postal_stage (code, lon, lat, city, state, county_name) FROM STDIN"
        ) as copy:
            for c in tqdm(
                centroids, desc="write postal codes", unit="ZIP", disable=not progress, file=sys.stderr
            ):
                copy.write_row((c.code, c.lon, c.lat, c.city, c.state, c.county))
        cursor.execute("ANALYZE tessera_postal_stage")
        cursor.execute(
            sql.SQL(
                """INSERT INTO {table} AS p (code, location, city, state, county_name)
                   SELECT code, ST_SetSRID(ST_MakePoint(lon, lat), 4326), city, state, county_name
                   FROM tessera_postal_stage
                   ORDER BY code
                   ON CONFLICT (code) DO UPDATE SET
                       location = EXCLUDED.location, city = EXCLUDED.city, state = EXCLUDED.state,
                       county_name = EXCLUDED.county_name
                   RETURNING (xmax = 0)"""
            ).format(table=sql.Identifier(PostalCode._meta.db_table))
        )
        inserted = [flag for (flag,) in cursor.fetchall()]
        return sum(inserted), len(inserted) - sum(inserted)

"""Mapbox vector tiles for the planner, built in PostGIS with ST_AsMVT and bound parameters.

Three tile sets:
- base: states and geography units (counties from z3, ZIP and custom shapes from z8) from the
  simplified outlines; the same for every plan, so territory colours are not in it (the planner
  paints units by territory through feature state, see planner_views.plan_map);
- accounts, raw: every account in the tile with its owner in the plan, from z11 where the densest
  tile of the demo (Manhattan) holds a couple of thousand points;
- accounts, aggregated below z11. Aggregating 100k points from scratch costs 40–70 ms a tile here
  (a sequential scan of the accounts table), too slow for a 50 ms budget. So one query aggregates
  every visible account into a fine grid (16 cells per z10 tile side, about 26k cells for 100k
  accounts) and each low-zoom tile merges the grid cells it covers (cells nest: a z tile's 16×16 cells
  are unions of z10 cells) and lets PostGIS encode them, the cells passed as bound arrays.

Geometry is SRID 4326 in the database; 3857 appears only here. Tile sizes follow MapLibre: extent
4096, buffer 64 for polygons (no seams at tile edges), 16 for points.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.db import connection

from accounts.choices import AccountStatus, Segment
from accounts.models import Account

from .choices import AssignmentRole, UnitLevel
from .models import AccountAssignment, GeoUnit, Plan, Territory

EXTENT = 4096
MAX_ZOOM = 22
RAW_MIN_ZOOM = 11  # below this, accounts are aggregated
GRID_ZOOM = RAW_MIN_ZOOM - 1
CELLS_PER_TILE = 16  # aggregation cells per tile side (a 512 px tile gives 32 px cells)
GRID_BITS = GRID_ZOOM + 4  # log2(CELLS_PER_TILE) = 4
COUNTY_MIN_ZOOM = 3
FINE_UNIT_MIN_ZOOM = 8
# Aggregated grids are rebuilt when accounts change; whether they did is checked at most this often
# (see _table_stamp), so an import shows on the overview map within this many seconds, on the raw
# tiles at once.
STAMP_TTL_SECONDS = 10.0
SEGMENTS = [value for value, _label in Segment.choices]


class TileError(ValueError):
    """A tile address outside the pyramid."""


def check_address(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise TileError(f"Zoom {z} is outside 0–{MAX_ZOOM}.")
    if not (0 <= x < 2**z and 0 <= y < 2**z):
        raise TileError(f"Tile {x}/{y} does not exist at zoom {z}.")


def _pixel_tolerance_degrees(z: int) -> float:
    """Half a screen pixel at zoom z in degrees: finer detail is invisible and only slows encoding."""
    return 360.0 / (512 * 2**z) / 2


def base_tile(z: int, x: int, y: int) -> bytes:
    """States and geography units: layers 'states' and 'units' (feature id = GeoUnit id).

    Geography changes only when load_geography runs, so encoded tiles are kept per process."""
    check_address(z, x, y)
    key = (z, x, y, GRIDS.geography_stamp())
    cached = BASE_TILES.get(key)
    if cached is not None:
        return cached
    kept = z < FINE_UNIT_MIN_ZOOM  # states and counties only: kept in the database too
    data = _kept_base_tile(z, x, y) if kept else None
    if data is None:
        data = _base_tile(z, x, y)
        if kept:
            _keep_base_tile(z, x, y, data)
    BASE_TILES.put(key, data)
    return data


def _kept_base_tile(z: int, x: int, y: int) -> bytes | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT data FROM territories_basetile WHERE z = %s AND x = %s AND y = %s", [z, x, y])
        row = cursor.fetchone()
    return bytes(row[0]) if row else None


def _keep_base_tile(z: int, x: int, y: int, data: bytes) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO territories_basetile (z, x, y, data, created)
               VALUES (%s, %s, %s, %s, now()) ON CONFLICT (z, x, y) DO NOTHING""",
            [z, x, y, data],
        )


def _base_tile(z: int, x: int, y: int) -> bytes:
    unit_levels = []
    if z >= COUNTY_MIN_ZOOM:
        unit_levels.append(UnitLevel.COUNTY.value)
    if z >= FINE_UNIT_MIN_ZOOM:
        unit_levels += [UnitLevel.ZIP.value, UnitLevel.CUSTOM.value]
    table = GeoUnit._meta.db_table
    sql = f"""
        WITH bounds AS (
            SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS env,
                   ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => 64.0 / 4096), 4326) AS env4326
        ),
        states AS (
            SELECT u.id, u.code, u.name,
                   ST_AsMVTGeom(ST_Transform(ST_Simplify(u.geom_simplified, %(tol)s, true), 3857),
                                bounds.env, 4096, 64, true) AS geom
            FROM {table} u, bounds
            WHERE u.level = %(state)s AND u.geom_simplified && bounds.env4326
        ),
        units AS (
            SELECT u.id, u.code, u.name, u.level, u.parent_id AS state_id,
                   ST_AsMVTGeom(ST_Transform(ST_Simplify(u.geom_simplified, %(tol)s, true), 3857),
                                bounds.env, 4096, 64, true) AS geom
            FROM {table} u, bounds
            WHERE u.level = ANY(%(levels)s) AND u.geom_simplified && bounds.env4326
        )
        SELECT (SELECT ST_AsMVT(states.*, 'states', 4096, 'geom', 'id') FROM states WHERE geom IS NOT NULL)
            || (SELECT ST_AsMVT(units.*, 'units', 4096, 'geom', 'id') FROM units WHERE geom IS NOT NULL)
    """
    params = {
        "z": z,
        "x": x,
        "y": y,
        "tol": _pixel_tolerance_degrees(z),
        "state": UnitLevel.STATE.value,
        "levels": unit_levels,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return bytes(row[0]) if row and row[0] else b""


# ---------------------------------------------------------------------------------------------
# Accounts


def _scope_sql(territory_ids: list[int] | None) -> tuple[str, str]:
    """JOIN and WHERE for the accounts a user may see: everything (planners, with the unassigned),
    or only those a visible territory owns in the plan."""
    if territory_ids is None:
        return "LEFT JOIN", ""
    return "JOIN", "AND aa.territory_id = ANY(%(territories)s)"


def accounts_raw_tile(*, plan: Plan, territory_ids: list[int] | None, z: int, x: int, y: int) -> bytes:
    """Every account in the tile: layer 'accounts', feature id = account id, with its segment,
    industry, status, revenue, potential, owner in the plan (territory id, colour) and lock."""
    join, scope = _scope_sql(territory_ids)
    sql = f"""
        WITH bounds AS (
            SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS env,
                   ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => 16.0 / 4096), 4326) AS env4326
        ),
        features AS (
            SELECT a.id, 1 AS n, a.segment, a.industry, a.status,
                   (a.status = %(customer)s)::int AS customers,
                   a.revenue::float8 AS revenue, a.potential::float8 AS potential,
                   aa.territory_id, t.color, COALESCE(aa.locked, false) AS locked,
                   ST_AsMVTGeom(ST_Transform(a.location, 3857), bounds.env, 4096, 16, true) AS geom
            FROM {Account._meta.db_table} a
            CROSS JOIN bounds
            {join} {AccountAssignment._meta.db_table} aa
                ON aa.account_id = a.id AND aa.plan_id = %(plan)s AND aa.role = %(primary)s
            LEFT JOIN {Territory._meta.db_table} t ON t.id = aa.territory_id
            WHERE a.location && bounds.env4326 {scope}
        )
        SELECT ST_AsMVT(features.*, 'accounts', 4096, 'geom', 'id') FROM features WHERE geom IS NOT NULL
    """
    params = {
        "z": z,
        "x": x,
        "y": y,
        "plan": plan.pk,
        "primary": AssignmentRole.PRIMARY.value,
        "customer": AccountStatus.CUSTOMER.value,
        "territories": territory_ids or [],
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return bytes(row[0]) if row and row[0] else b""


@dataclass
class AccountGrid:
    """Visible accounts aggregated into cells of 1/16 of a z10 tile (Web Mercator grid).

    Arrays are parallel, one entry per non-empty cell. `single_id` is the account id of a cell
    holding exactly one account (so a lone account stays clickable at low zoom), else 0."""

    gx: np.ndarray
    gy: np.ndarray
    n: np.ndarray
    customers: np.ndarray
    revenue: np.ndarray
    potential: np.ndarray
    sum_x: np.ndarray  # sums of normalised Mercator x (0–1) for a count-weighted cell centre
    sum_y: np.ndarray
    segments: np.ndarray  # (cells, len(SEGMENTS)) counts
    single_id: np.ndarray
    built_at: float


def _grid_query(*, plan: Plan, territory_ids: list[int] | None) -> AccountGrid:
    join, scope = _scope_sql(territory_ids)
    if territory_ids is None:
        # Planners see every account; the plan does not enter the aggregate, so no join at all.
        join_sql = ""
    else:
        join_sql = f"""{join} {AccountAssignment._meta.db_table} aa
                ON aa.account_id = a.id AND aa.plan_id = %(plan)s AND aa.role = %(primary)s"""
    segment_columns = ", ".join(
        f"count(*) FILTER (WHERE segment = %(segment_{i})s) AS s{i}" for i in range(len(SEGMENTS))
    )
    # Normalised Web Mercator coordinates (0–1, y down) computed from lon/lat: the same projection
    # as ST_Transform(…, 3857) but without a PROJ call per row. Latitudes are clamped to Mercator's
    # ±85.0511° like every web map.
    # One row of packed big-endian columns (int8send/float8send, concatenated in the same row order
    # by every aggregate): 45k cells arrive as twelve byte strings instead of 45k Python tuples,
    # which took longer than the query itself.
    int_columns = ["gx", "gy", "n", "customers", *[f"s{i}" for i in range(len(SEGMENTS))], "single_id"]
    float_columns = ["revenue", "potential", "sum_x", "sum_y"]
    packed = ", ".join(
        [f"string_agg(int8send({c}::bigint), ''::bytea)" for c in int_columns]
        + [f"string_agg(float8send({c}), ''::bytea)" for c in float_columns]
    )
    sql = f"""
        WITH p AS (
            SELECT a.id, a.segment, a.status, a.revenue, a.potential,
                   (ST_X(a.location) + 180.0) / 360.0 AS mx,
                   (1.0 - ln(tan(radians(lat)) + 1.0 / cos(radians(lat))) / pi()) / 2.0 AS my
            FROM {Account._meta.db_table} a
            {join_sql}
            CROSS JOIN LATERAL (SELECT GREATEST(-85.0511, LEAST(85.0511, ST_Y(a.location))) AS lat) c
            WHERE a.location IS NOT NULL {scope}
        ), cells AS (
            SELECT floor(mx * %(cells)s)::int AS gx, floor(my * %(cells)s)::int AS gy, count(*) AS n,
                   count(*) FILTER (WHERE status = %(customer)s) AS customers,
                   COALESCE(sum(revenue), 0)::float8 AS revenue,
                   COALESCE(sum(potential), 0)::float8 AS potential,
                   sum(mx) AS sum_x, sum(my) AS sum_y,
                   {segment_columns},
                   CASE WHEN count(*) = 1 THEN min(id) ELSE 0 END AS single_id
            FROM p GROUP BY 1, 2
        )
        SELECT {packed} FROM cells
    """
    params = {
        "plan": plan.pk,
        "primary": AssignmentRole.PRIMARY.value,
        "customer": AccountStatus.CUSTOMER.value,
        "territories": territory_ids or [],
        "cells": 2**GRID_BITS,
        **{f"segment_{i}": s for i, s in enumerate(SEGMENTS)},
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    columns = {}
    for name, value in zip([*int_columns, *float_columns], row, strict=True):
        dtype = ">i8" if name in int_columns else ">f8"
        columns[name] = np.frombuffer(bytes(value or b""), dtype=dtype).astype(dtype[1:])
    return AccountGrid(
        gx=columns["gx"],
        gy=columns["gy"],
        n=columns["n"],
        customers=columns["customers"],
        revenue=columns["revenue"],
        potential=columns["potential"],
        sum_x=columns["sum_x"],
        sum_y=columns["sum_y"],
        segments=np.stack([columns[f"s{i}"] for i in range(len(SEGMENTS))], axis=1).reshape(
            -1, len(SEGMENTS)
        ),
        single_id=columns["single_id"],
        built_at=time.monotonic(),
    )


def _table_stamp(table: str) -> tuple:
    """Something that changes whenever rows of `table` are written: PostgreSQL's own counters of
    inserted, updated and deleted rows (those flushed by every backend plus this transaction's
    own), in well under a millisecond. `max(updated)` would be exact but scans the whole table
    (20–50 ms at 100k accounts, on every check). Other sessions' writes show in the counters
    about a second after they commit."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT pg_stat_get_tuples_inserted(r.oid) + pg_stat_get_xact_tuples_inserted(r.oid),
                      pg_stat_get_tuples_updated(r.oid) + pg_stat_get_xact_tuples_updated(r.oid),
                      pg_stat_get_tuples_deleted(r.oid) + pg_stat_get_xact_tuples_deleted(r.oid)
               FROM (SELECT %s::regclass::oid AS oid) r""",
            [table],
        )
        return tuple(cursor.fetchone())


class _TileCache:
    """A small per-process LRU of encoded tiles."""

    def __init__(self, size: int):
        self.size = size
        self.tiles: OrderedDict[tuple, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self.lock:
            data = self.tiles.get(key)
            if data is not None:
                self.tiles.move_to_end(key)
            return data

    def put(self, key: tuple, data: bytes) -> None:
        with self.lock:
            self.tiles[key] = data
            while len(self.tiles) > self.size:
                self.tiles.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.tiles.clear()


BASE_TILES = _TileCache(size=1024)


class _GridCache:
    """Per-process cache of account grids, keyed by scope and data stamp (a few MB each at 100k)."""

    def __init__(self, size: int = 16):
        self.size = size
        self.grids: OrderedDict[tuple, AccountGrid] = OrderedDict()
        self.stamp: tuple | None = None
        self.stamp_at = 0.0
        self.geo_stamp: tuple | None = None
        self.geo_stamp_at = 0.0
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            self.grids.clear()
            self.stamp = None
            self.stamp_at = 0.0
            self.geo_stamp = None
            self.geo_stamp_at = 0.0
        BASE_TILES.clear()

    def geography_stamp(self) -> tuple:
        now = time.monotonic()
        if self.geo_stamp is None or now - self.geo_stamp_at > STAMP_TTL_SECONDS:
            self.geo_stamp = _table_stamp(GeoUnit._meta.db_table)
            self.geo_stamp_at = now
        return self.geo_stamp

    def accounts_stamp(self) -> tuple:
        now = time.monotonic()
        if self.stamp is None or now - self.stamp_at > STAMP_TTL_SECONDS:
            self.stamp = _table_stamp(Account._meta.db_table)
            self.stamp_at = now
        return self.stamp

    def get(self, key: tuple, build) -> AccountGrid:
        with self.lock:
            grid = self.grids.get(key)
            if grid is not None:
                self.grids.move_to_end(key)
                return grid
        grid = build()
        with self.lock:
            self.grids[key] = grid
            while len(self.grids) > self.size:
                self.grids.popitem(last=False)
        return grid


GRIDS = _GridCache()


def caches_clear() -> None:
    """Forget every grid and tile cached in this process (tests; after loading geography in the same
    process). Base tiles kept in the database go when the geography is written (a trigger)."""
    GRIDS.clear()


def account_grid(*, plan: Plan, territory_ids: list[int] | None) -> AccountGrid:
    """The aggregated grid for this scope. Planners share one grid for every plan (it holds no
    owner); a scoped grid depends on the plan's assignments, so its key carries the plan version."""
    stamp = GRIDS.accounts_stamp()
    if territory_ids is None:
        key: tuple = ("all", stamp)
    else:
        key = ("scoped", plan.pk, plan.version, tuple(sorted(territory_ids)), stamp)
    return GRIDS.get(key, lambda: _grid_query(plan=plan, territory_ids=territory_ids))


def accounts_aggregate_tile(*, grid: AccountGrid, z: int, x: int, y: int) -> bytes:
    """Layer 'accounts' at low zoom: one point per 1/16-tile cell with the count, customers,
    revenue, potential, the dominant segment, and `id` when the cell holds a single account."""
    shift = GRID_BITS - z - 4  # grid cells per aggregation cell, as a power of two
    inside = (grid.gx >> (GRID_BITS - z) == x) & (grid.gy >> (GRID_BITS - z) == y)
    if not inside.any():
        return b""
    gx, gy = grid.gx[inside] >> shift, grid.gy[inside] >> shift
    keys = gx * (CELLS_PER_TILE * 2**z) + gy
    unique, group = np.unique(keys, return_inverse=True)
    cells = len(unique)

    def total(values):
        return np.bincount(group, weights=values, minlength=cells)

    n = total(grid.n[inside]).astype(np.int64)
    customers = total(grid.customers[inside]).astype(np.int64)
    revenue = total(grid.revenue[inside])
    potential = total(grid.potential[inside])
    scale = 2**z
    px = np.rint((total(grid.sum_x[inside]) / n * scale - x) * EXTENT).astype(np.int64)
    py = np.rint((total(grid.sum_y[inside]) / n * scale - y) * EXTENT).astype(np.int64)
    segment_counts = np.zeros((cells, len(SEGMENTS)), dtype=np.int64)
    np.add.at(segment_counts, group, grid.segments[inside])
    dominant = [
        SEGMENTS[i] if row.sum() else ""
        for i, row in zip(segment_counts.argmax(axis=1), segment_counts, strict=True)
    ]
    single = np.zeros(cells, dtype=np.int64)
    np.maximum.at(single, group, grid.single_id[inside])
    single[n != 1] = 0
    sql = """
        SELECT ST_AsMVT(features.*, 'accounts', 4096, 'geom', 'id') FROM (
            SELECT NULLIF(c.id, 0) AS id, c.n, c.customers, c.revenue, c.potential,
                   NULLIF(c.segment, '') AS segment, ST_MakePoint(c.px, c.py) AS geom
            FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::float8[], %s::float8[], %s::text[],
                        %s::int[], %s::int[])
                 AS c(id, n, customers, revenue, potential, segment, px, py)
        ) AS features
    """
    params = [
        single.tolist(),
        n.tolist(),
        customers.tolist(),
        np.round(revenue, 2).tolist(),
        np.round(potential, 2).tolist(),
        dominant,
        px.tolist(),
        py.tolist(),  # tile space, y down, as ST_AsMVTGeom would produce
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return bytes(row[0]) if row and row[0] else b""


def accounts_tile(*, plan: Plan, territory_ids: list[int] | None, z: int, x: int, y: int) -> bytes:
    """The accounts layer at any zoom: aggregated below RAW_MIN_ZOOM, every account from it."""
    check_address(z, x, y)
    if territory_ids is not None and not territory_ids:
        return b""
    if z >= RAW_MIN_ZOOM:
        return accounts_raw_tile(plan=plan, territory_ids=territory_ids, z=z, x=x, y=y)
    return accounts_aggregate_tile(grid=account_grid(plan=plan, territory_ids=territory_ids), z=z, x=x, y=y)


def tile_bounds_lonlat(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in degrees; used by tests and the benchmark."""

    def lon(tx):
        return tx / 2**z * 360.0 - 180.0

    def lat(ty):
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * ty / 2**z))))

    return lon(x), lat(y + 1), lon(x + 1), lat(y)


def tile_for_lonlat(z: int, lon: float, lat: float) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(max(-85.0511, min(85.0511, lat)))
    y = int((1 - math.log(math.tan(lat_r) + 1 / math.cos(lat_r)) / math.pi) / 2 * n)
    return min(x, n - 1), min(y, n - 1)

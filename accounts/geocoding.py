"""Offline geocoding of US accounts by postal code, against the shipped ZIP centroid table."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db import connection

from .models import PostalCode

_ZIP = re.compile(r"^\s*(\d{3,5})(?:[-\s]?\d{4})?\s*$")


def normalize_postal_code(raw: object) -> str:
    """'2134' → '02134', '02134-1234' → '02134', 2134.0 (Excel) → '02134'; '' when not a US ZIP.

    Spreadsheets drop leading zeros of New England ZIPs, so 3–4 digit values are left-padded."""
    if raw is None:
        return ""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    match = _ZIP.match(str(raw))
    return match.group(1).zfill(5) if match else ""


def postal_code_centroids(codes: Iterable[str]) -> dict[str, tuple[float, float]]:
    """(lon, lat) of each known ZIP among `codes`, in one query; unknown codes are absent."""
    wanted = {c for c in codes if c}
    if not wanted:
        return {}
    # Plain numbers from PostGIS: building a GEOS point per ZIP costs seconds at tens of thousands.
    # One array parameter rather than an IN list: with 8,000 codes that is 5x faster (planning).
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT code, ST_X(location), ST_Y(location) FROM {PostalCode._meta.db_table} "
            "WHERE code = ANY(%s)",
            [sorted(wanted)],
        )
        return {code: (x, y) for code, x, y in cursor.fetchall()}


def city_key(city: str, state: str) -> tuple[str, str]:
    """How places are matched: case and surrounding spaces ignored."""
    return (city or "").strip().upper(), (state or "").strip().upper()


def city_centroids(places: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(lon, lat) of each known place among `places` (city, state): the mean of that city's ZIP
    centroids, keyed by `city_key`. One query."""
    wanted = {city_key(city, state) for city, state in places}
    wanted = {(city, state) for city, state in wanted if city and state}
    if not wanted:
        return {}
    cities, states = zip(*wanted, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT upper(p.city), p.state, avg(ST_X(p.location)), avg(ST_Y(p.location))
                FROM {PostalCode._meta.db_table} p
                JOIN unnest(%s::text[], %s::text[]) AS w(city, state)
                  ON upper(p.city) = w.city AND p.state = w.state
                GROUP BY 1, 2""",
            [list(cities), list(states)],
        )
        return {(city, state): (x, y) for city, state, x, y in cursor.fetchall()}

"""Offline geocoding of US accounts by postal code, against the shipped ZIP centroid table."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db.models import FloatField, Func

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
    rows = PostalCode.objects.filter(code__in=wanted).values_list(
        "code",
        Func("location", function="ST_X", output_field=FloatField()),
        Func("location", function="ST_Y", output_field=FloatField()),
    )
    return {code: (x, y) for code, x, y in rows}

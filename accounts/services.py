"""Writes for accounts and reps.

The bulk upserts here back both the file imports (`manage.py import_accounts|import_reps`) and the
REST endpoint `accounts/bulk/`: rows arrive as dicts keyed by field name, with values that may be
strings (CSV cells), numbers (XLSX cells) or JSON types, and are matched to stored rows by the CRM's
`external_id`.

Upsert rules, the same for every caller:
- A key present in a row sets that field; a key absent leaves the stored value alone (a new row gets
  the model default). An empty value clears the field to its empty value (blank, null or default).
- A row whose every provided field already equals the stored value is `unchanged` and not written,
  so the same batch sent twice gives all `unchanged`.
- `atomic=True` writes nothing if any row fails; `atomic=False` writes the good rows.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.contrib.gis.db.models import GeometryField
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import validate_email
from django.db import connection, models, transaction
from django.db.models import BooleanField, F, FloatField, Func, Value
from django.utils import timezone

from tessera_common.db import analyze_after_large_write
from tessera_common.errors import ApplicationError
from tessera_common.events import accounts_created_emit

from .choices import AccountStatus, GeocodeQuality, Segment, TokenScope
from .geocoding import city_centroids, city_key, normalize_postal_code, postal_code_centroids
from .models import Account, ApiToken, Rep

logger = logging.getLogger(__name__)

CREATED, UPDATED, UNCHANGED, ERROR = "created", "updated", "unchanged", "error"
STATUSES = (CREATED, UPDATED, UNCHANGED, ERROR)
NON_FIELD = "non_field_errors"

# Stored points go through float8; 1e-7 degrees is about 1 cm, well below any CRM's precision.
LOCATION_TOLERANCE = 1e-7

# External ids per query when loading stored rows; one array parameter each.
LOAD_CHUNK = 50_000
PROGRESS_EVERY = 1_000

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total): stages "validate" and "write" here, "read" in imports."""

ACCOUNT_FIELDS = (
    "external_id", "name", "latitude", "longitude", "street", "city", "state", "postal_code", "country",
    "industry", "segment", "employees", "revenue", "potential", "workload_hours", "status", "lead_source",
    "parent_external_id", "attributes",
)  # fmt: skip
REP_FIELDS = (
    "external_id", "name", "email", "home_latitude", "home_longitude", "home_postal_code", "capacity_fte",
    "specialties", "manager_external_id", "title", "active",
)  # fmt: skip


@dataclass
class RowResult:
    """The outcome of one input row. `row` is the caller's row number (the file's row for imports)."""

    row: int
    external_id: str
    status: str
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    id: int | None = None  # the stored row's id; None for errors and for rows not written

    def as_dict(self) -> dict:
        return {
            "row": self.row,
            "external_id": self.external_id,
            "status": self.status,
            "id": self.id,
            "errors": self.errors,
            "warnings": self.warnings,
        }


@dataclass
class BulkResult:
    """Per-row outcomes and totals of a bulk upsert.

    `committed` is False when nothing was written: an atomic batch with errors, or a dry run. The
    statuses of the good rows then say what *would* have happened."""

    rows: list[RowResult]
    committed: bool

    @property
    def totals(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for r in self.rows:
            counts[r.status] += 1
        return counts

    @property
    def error_count(self) -> int:
        return sum(1 for r in self.rows if r.status == ERROR)

    def as_dict(self) -> dict:
        return {"committed": self.committed, "totals": self.totals, "rows": [r.as_dict() for r in self.rows]}


# --- value cleaning -------------------------------------------------------------------------------


class _Invalid(Exception):
    """One field's value is wrong; the message is shown to the user as is."""


def _is_empty(value: Any) -> bool:
    # `type(...) is str` first: this runs for every cell of every row (a million times per 100k rows).
    return value is None or ((type(value) is str or isinstance(value, str)) and not value.strip())


def _as_text(value: Any) -> str:
    if type(value) is str or isinstance(value, str):
        if "\x00" in value:  # PostgreSQL text cannot hold NUL; a binary file read as text has them
            raise _Invalid("Text may not contain NUL characters.")
        return value.strip()
    if isinstance(value, bool):
        raise _Invalid("Enter text, not true/false.")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("Enter text.")
        # Spreadsheets hand integers over as floats (1001.0): an id or code must not grow a ".0".
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int | Decimal):
        return str(value)
    raise _Invalid("Enter text.")


def _text(max_length: int) -> Callable[[Any], str]:
    def clean(value: Any) -> str:
        text = _as_text(value)
        if len(text) > max_length:
            raise _Invalid(f"Use at most {max_length} characters (this has {len(text)}).")
        return text

    return clean


_external_id = _text(64)

_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d*)?$")


def _to_decimal(value: Any) -> Decimal:
    kind = type(value)
    if kind is int:  # the common JSON cases first (bool is a subclass of int, not `int` itself)
        return Decimal(value)
    if kind is float and math.isfinite(value):
        return Decimal(repr(value))
    if isinstance(value, bool):
        raise _Invalid("Enter a number, not true/false.")
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float):
        # repr gives the shortest decimal that round-trips, so 0.1 stays 0.1 and not 0.1000000000000000055.
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip().replace("$", "", 1)
        if _THOUSANDS.match(text):
            text = text.replace(",", "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise _Invalid(f"'{value.strip()}' is not a number.") from None
    else:
        raise _Invalid("Enter a number.")
    if not number.is_finite():
        raise _Invalid("Enter a finite number.")
    return number


def _decimal(max_digits: int, places: int) -> Callable[[Any], Decimal]:
    quantum = Decimal(1).scaleb(-places)
    limit = Decimal(10) ** (max_digits - places)

    def clean(value: Any) -> Decimal:
        number = _to_decimal(value)
        if number < 0:
            raise _Invalid(f"Must be 0 or more (got {number}).")
        if number >= limit:  # checked first too: quantize fails on numbers wider than the context
            raise _Invalid(f"Must be less than {limit:,} (got {number}).")
        # More decimals than the column keeps are rounded, as the database would.
        number = number.quantize(quantum, rounding=ROUND_HALF_UP)
        if number >= limit:
            raise _Invalid(f"Must be less than {limit:,} (got {number}).")
        return number

    return clean


def _whole_number(value: Any) -> int:
    number = _to_decimal(value)
    if number != number.to_integral_value():
        raise _Invalid(f"Enter a whole number (got {number}).")
    if number < 0:
        raise _Invalid(f"Must be 0 or more (got {number}).")
    if number > 2_147_483_647:  # PositiveIntegerField is a 32-bit integer in PostgreSQL
        raise _Invalid("Too large.")
    return int(number)


def _capacity(value: Any) -> Decimal:
    number = _to_decimal(value)
    if abs(number) < 1000:  # quantize fails on numbers wider than the decimal context
        number = number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if not Decimal(0) < number <= Decimal(2):
        raise _Invalid(f"Capacity is in FTE: more than 0 and at most 2 (got {number}).")
    return number


def _coordinate(label: str, bound: int) -> Callable[[Any], float]:
    def clean(value: Any) -> float:
        if isinstance(value, str) and "," in value and "." not in value:
            # "37,7749" from a semicolon-separated European export: a comma cannot be a thousands
            # separator in a coordinate, so it is the decimal mark.
            value = value.replace(",", ".")
        number = float(_to_decimal(value))
        if not -bound <= number <= bound:
            raise _Invalid(f"{label} must be between -{bound} and {bound} (got {number:g}).")
        return number

    return clean


_latitude = _coordinate("Latitude", 90)
_longitude = _coordinate("Longitude", 180)


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _choice(choices: type[models.TextChoices], noun: str) -> Callable[[Any], str]:
    lookup = {}
    for value, label in choices.choices:
        lookup[_key(value)] = value
        lookup[_key(str(label))] = value
    exact = {value: value for value in choices.values}  # most inputs are the stored value itself
    allowed = ", ".join(choices.values)

    def clean(value: Any) -> str:
        if type(value) is str and value in exact:
            return value
        text = _as_text(value)
        try:
            return lookup[_key(text)]
        except KeyError:
            raise _Invalid(f"'{text}' is not a {noun}; use one of: {allowed}.") from None

    return clean


_TRUE = {"1", "true", "t", "yes", "y", "active", "on", "x"}
_FALSE = {"0", "false", "f", "no", "n", "inactive", "off"}


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = _as_text(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Invalid(f"'{text}' is not yes or no; use true/false, yes/no or 1/0.")


_COUNTRY_NAMES = {"USA": "US", "UNITED STATES": "US", "UNITED STATES OF AMERICA": "US", "U S": "US"}


def _country(value: Any) -> str:
    text = re.sub(r"[^A-Z]+", " ", _as_text(value).upper()).strip()
    text = _COUNTRY_NAMES.get(text, text)
    if not re.fullmatch(r"[A-Z]{2}", text):
        raise _Invalid(f"Use a two-letter country code such as US (got '{_as_text(value)}').")
    return text


_US_STATES = {
    "ALABAMA": "AL", "ALASKA": "AK", "ARIZONA": "AZ", "ARKANSAS": "AR", "CALIFORNIA": "CA", "COLORADO": "CO",
    "CONNECTICUT": "CT", "DELAWARE": "DE", "DISTRICT OF COLUMBIA": "DC", "FLORIDA": "FL", "GEORGIA": "GA",
    "HAWAII": "HI", "IDAHO": "ID", "ILLINOIS": "IL", "INDIANA": "IN", "IOWA": "IA", "KANSAS": "KS",
    "KENTUCKY": "KY", "LOUISIANA": "LA", "MAINE": "ME", "MARYLAND": "MD", "MASSACHUSETTS": "MA",
    "MICHIGAN": "MI", "MINNESOTA": "MN", "MISSISSIPPI": "MS", "MISSOURI": "MO", "MONTANA": "MT",
    "NEBRASKA": "NE", "NEVADA": "NV", "NEW HAMPSHIRE": "NH", "NEW JERSEY": "NJ", "NEW MEXICO": "NM",
    "NEW YORK": "NY", "NORTH CAROLINA": "NC", "NORTH DAKOTA": "ND", "OHIO": "OH", "OKLAHOMA": "OK",
    "OREGON": "OR", "PENNSYLVANIA": "PA", "PUERTO RICO": "PR", "RHODE ISLAND": "RI", "SOUTH CAROLINA": "SC",
    "SOUTH DAKOTA": "SD", "TENNESSEE": "TN", "TEXAS": "TX", "UTAH": "UT", "VERMONT": "VT", "VIRGINIA": "VA",
    "WASHINGTON": "WA", "WEST VIRGINIA": "WV", "WISCONSIN": "WI", "WYOMING": "WY",
}  # fmt: skip


def _state(value: Any) -> str:
    if type(value) is str and len(value) == 2 and value.isalpha() and value.isupper():
        return value  # already a code, as nearly every CRM sends it
    text = " ".join(_as_text(value).upper().replace(".", " ").split())
    text = _US_STATES.get(text, text)
    if len(text) > 2:
        raise _Invalid(f"Use a state code of at most 2 letters such as CA (got '{_as_text(value)}').")
    return text


def _email(value: Any) -> str:
    text = _text(254)(value)
    try:
        validate_email(text)
    except ValidationError:
        raise _Invalid(f"'{text}' is not an email address.") from None
    return text


def _specialties(value: Any) -> list[str]:
    if isinstance(value, str):
        # A semicolon (or bar) separates items; a comma may be inside one ("Oil, Gas & Mining").
        items = re.split(r"[;|]", value)
    elif isinstance(value, list | tuple):
        items = [_as_text(item) for item in value]
    else:
        raise _Invalid('Give a list, or one text with items separated by ";".')
    cleaned = list(dict.fromkeys(item.strip() for item in items if item.strip()))
    for item in cleaned:
        if len(item) > 100:
            raise _Invalid(f"Each specialty has at most 100 characters ('{item[:20]}…' has {len(item)}).")
    return cleaned


@dataclass(frozen=True)
class _Field:
    """A plain field: `clean` turns a non-empty input into the stored value; `empty` is what an
    empty input stores (None for a required field, which makes an empty input an error)."""

    clean: Callable[[Any], Any]
    empty: Any = ""
    required: bool = False


_ACCOUNT_PLAIN = {
    "name": _Field(_text(255), required=True),
    "street": _Field(_text(255)),
    "city": _Field(_text(100)),
    "state": _Field(_state),
    "country": _Field(_country, "US"),
    "industry": _Field(_text(100)),
    "segment": _Field(_choice(Segment, "segment")),
    "employees": _Field(_whole_number, None),
    "revenue": _Field(_decimal(16, 2), Decimal("0.00")),
    "potential": _Field(_decimal(16, 2), Decimal("0.00")),
    "workload_hours": _Field(_decimal(9, 2), Decimal("0.00")),
    "status": _Field(_choice(AccountStatus, "status"), AccountStatus.PROSPECT.value),
    "lead_source": _Field(_text(100)),
}

_REP_PLAIN = {
    "name": _Field(_text(255), required=True),
    "email": _Field(_email),
    "capacity_fte": _Field(_capacity, Decimal("1.00")),
    "specialties": _Field(_specialties, []),
    "title": _Field(_text(100)),
    "active": _Field(_boolean, True),
}


@dataclass(frozen=True)
class _Kind:
    """What differs between the account and the rep upsert; the engine below is shared."""

    model: type[models.Model]
    noun: str
    keys: tuple[str, ...]
    plain: Mapping[str, _Field]
    lat_key: str
    lon_key: str
    postal_key: str
    location_attr: str
    quality_attr: str | None
    parent_key: str
    parent_attr: str
    has_attributes: bool


ACCOUNT_KIND = _Kind(
    model=Account, noun="account", keys=ACCOUNT_FIELDS, plain=_ACCOUNT_PLAIN,
    lat_key="latitude", lon_key="longitude", postal_key="postal_code",
    location_attr="location", quality_attr="geocode_quality",
    parent_key="parent_external_id", parent_attr="parent", has_attributes=True,
)  # fmt: skip
REP_KIND = _Kind(
    model=Rep, noun="rep", keys=REP_FIELDS, plain=_REP_PLAIN,
    lat_key="home_latitude", lon_key="home_longitude", postal_key="home_postal_code",
    location_attr="home_location", quality_attr=None,
    parent_key="manager_external_id", parent_attr="manager", has_attributes=False,
)  # fmt: skip

_UNSET = object()
_KEY_SETS = {kind.noun: frozenset(kind.keys) for kind in (ACCOUNT_KIND, REP_KIND)}


class _Row:
    """Working state of one input row between validation and writing."""

    __slots__ = (
        "number", "raw", "external_id", "existing", "values", "parent_ext", "coords",
        "postal", "errors", "warnings", "status",
    )  # fmt: skip

    def __init__(self, number: int, raw: Any):
        self.number = number
        self.raw = raw
        self.external_id = ""
        self.existing = None
        self.values: dict[str, Any] = {}
        self.parent_ext: Any = _UNSET  # _UNSET: not given; None: clear the link; str: link to it
        self.coords: Any = _UNSET  # _UNSET: not given; None: given empty; (lon, lat)
        self.postal: Any = _UNSET
        self.errors: dict[str, list[str]] = {}
        self.warnings: dict[str, list[str]] = {}
        self.status = ""

    def error(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)

    def warn(self, key: str, message: str) -> None:
        self.warnings.setdefault(key, []).append(message)


# --- public services ------------------------------------------------------------------------------


def account_bulk_upsert(
    *,
    rows: Sequence[Mapping[str, Any]],
    atomic: bool = True,
    actor=None,
    progress: Progress | None = None,
    row_numbers: Sequence[int] | None = None,
    input_errors: Mapping[int, Mapping[str, list[str]]] | None = None,
    dry_run: bool = False,
) -> BulkResult:
    """Create or update accounts by `external_id`; see the module docstring for the upsert rules.

    Keys: external_id (required), name (required to create), street, city, state, postal_code,
    country, industry, segment, employees, revenue, potential, workload_hours, status, lead_source,
    latitude + longitude, parent_external_id, attributes (custom CRM fields, merged key by key; a
    null or empty value removes a key).

    Location: coordinates in the row are stored as exact; otherwise a US postal code is geocoded to
    its ZIP centroid (quality postal); otherwise city + state to the city's centre (quality city);
    otherwise the account has no location.
    `row_numbers` name the rows in the result (default 1..n); `input_errors` (by row position) are
    problems the caller found first, e.g. a malformed CSV line: those rows are reported as errors.
    """
    return _bulk_upsert(
        ACCOUNT_KIND, rows=rows, atomic=atomic, actor=actor, progress=progress,
        row_numbers=row_numbers, input_errors=input_errors, dry_run=dry_run,
    )  # fmt: skip


def rep_bulk_upsert(
    *,
    rows: Sequence[Mapping[str, Any]],
    atomic: bool = True,
    actor=None,
    progress: Progress | None = None,
    row_numbers: Sequence[int] | None = None,
    input_errors: Mapping[int, Mapping[str, list[str]]] | None = None,
    dry_run: bool = False,
) -> BulkResult:
    """Create or update reps by `external_id`, with the same rules and result as account_bulk_upsert.

    Keys: external_id (required), name (required to create), email, home_latitude + home_longitude,
    home_postal_code (geocoded when no coordinates are given), capacity_fte (0 < x <= 2),
    specialties (a list, or one text split on ";"), manager_external_id, title, active.
    The login (`user`) is never set here.
    """
    return _bulk_upsert(
        REP_KIND, rows=rows, atomic=atomic, actor=actor, progress=progress,
        row_numbers=row_numbers, input_errors=input_errors, dry_run=dry_run,
    )  # fmt: skip


# --- the engine -----------------------------------------------------------------------------------


def _bulk_upsert(kind: _Kind, **options) -> BulkResult:
    with _collector_paused():
        result = _bulk_upsert_atomic(kind, **options)
    if kind is ACCOUNT_KIND and result.committed:
        accounts_created_emit([r.id for r in result.rows if r.status == CREATED and r.id is not None])
    return result


@contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector for one batch.

    A batch holds a few hundred thousand small dicts; each of them allocated makes the collector
    rescan the heap, which was 5 s of a 23 s run at 100,000 rows. Nothing here builds reference
    cycles that must be freed before the batch ends, and the collector runs again right after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@transaction.atomic
def _bulk_upsert_atomic(
    kind: _Kind,
    *,
    rows: Sequence[Mapping[str, Any]],
    atomic: bool,
    actor,
    progress: Progress | None,
    row_numbers: Sequence[int] | None,
    input_errors: Mapping[int, Mapping[str, list[str]]] | None,
    dry_run: bool,
) -> BulkResult:
    if row_numbers is not None and len(row_numbers) != len(rows):
        raise ValueError("row_numbers must have one number per row")
    numbers = row_numbers if row_numbers is not None else range(1, len(rows) + 1)
    work = [_Row(number, raw) for number, raw in zip(numbers, rows, strict=True)]
    for index, errors in (input_errors or {}).items():
        for key, messages in errors.items():
            for message in messages:
                work[index].error(key, message)

    first_rows = _read_external_ids(kind, work)
    existing = _load_existing(kind, list(first_rows))
    for ext, row in first_rows.items():
        row.existing = existing.get(ext)

    tick = _Ticker(progress, "validate", len(work))
    for row in work:
        if isinstance(row.raw, Mapping):
            _clean_row(kind, row)
        tick()

    _locate(kind, work)
    stored = _check_hierarchy(kind, work, first_rows, existing)
    for row in work:
        row.status = ERROR if row.errors else _decide(kind, row)

    result = BulkResult(
        rows=[
            RowResult(
                r.number, r.external_id, r.status, r.errors, r.warnings,
                r.existing["id"] if r.existing is not None and r.status != ERROR else None,
            )
            for r in work
        ],
        committed=False,
    )  # fmt: skip
    if dry_run or (atomic and result.error_count):
        return result
    ids = _write(kind, work, stored, progress)
    for outcome in result.rows:
        if outcome.status == CREATED:
            outcome.id = ids[outcome.external_id]
    result.committed = True
    analyze_after_large_write(kind.model, rows=result.totals[CREATED] + result.totals[UPDATED])
    logger.info("%s bulk upsert by %s: %s", kind.noun, actor or "system", result.totals)
    return result


def _read_external_ids(kind: _Kind, work: list[_Row]) -> dict[str, _Row]:
    """Set each row's external id; later duplicates become errors. Returns the first row per id."""
    first: dict[str, _Row] = {}
    for row in work:
        if not isinstance(row.raw, Mapping):
            row.error(NON_FIELD, "Each row must be an object of field → value.")
            continue
        value = row.raw.get("external_id")
        if _is_empty(value):
            row.error("external_id", "This field is required.")
            continue
        try:
            row.external_id = _external_id(value)
        except _Invalid as exc:
            row.external_id = str(value)[:64]
            row.error("external_id", str(exc))
            continue
        earlier = first.get(row.external_id)
        if earlier is not None:
            row.error(
                "external_id",
                f"Duplicate of row {earlier.number}: each external id may appear once per batch.",
            )
        else:
            first[row.external_id] = row
    return first


class _EqualsAny(Func):
    """`column = ANY(array)`: one array parameter rather than an IN list of 10,000 placeholders,
    which psycopg splices into the query in Python."""

    arg_joiner = " = ANY("
    template = "%(expressions)s)"
    output_field = BooleanField()


def _external_id_in(values: Iterable[str]) -> _EqualsAny:
    return _EqualsAny(F("external_id"), Value(list(values), output_field=ArrayField(models.CharField())))


class _PointX(Func):
    function = "ST_X"
    output_field = FloatField()


class _PointY(Func):
    function = "ST_Y"
    output_field = FloatField()


def _load_existing(kind: _Kind, external_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Stored rows of the batch as dicts of field name → value, locked until the batch commits so
    that no one updates them between our comparison and our write.

    Dicts rather than model instances, and the point as two floats (`location_x`, `location_y`)
    rather than a GEOS object: at 100,000 rows each of those cost seconds. `parent_ext` is the
    stored parent's external id, to compare links without loading the parents."""
    names = ["id", "external_id", *kind.plain, kind.postal_key]
    names += [kind.quality_attr] if kind.quality_attr else []
    names += ["attributes"] if kind.has_attributes else []
    found = {}
    for start in range(0, len(external_ids), LOAD_CHUNK):
        chunk = external_ids[start : start + LOAD_CHUNK]
        query = (
            kind.model.objects.filter(_external_id_in(chunk))
            .order_by()
            .annotate(
                parent_ext=F(f"{kind.parent_attr}__external_id"),
                location_x=_PointX(kind.location_attr),
                location_y=_PointY(kind.location_attr),
            )
            # of=("self",): FOR UPDATE may not reach the nullable side of the join to the parent.
            .select_for_update(of=("self",))
            .values(*names, "parent_ext", "location_x", "location_y")
        )
        found.update((stored["external_id"], stored) for stored in query)
    return found


def _clean_row(kind: _Kind, row: _Row) -> None:
    raw, existing = row.raw, row.existing
    known = _KEY_SETS[kind.noun]
    for key in raw:
        if key not in known:
            row.error(str(key), f"Unknown field; {kind.noun} fields are: {', '.join(kind.keys)}.")
    if existing is None and "name" not in raw and "external_id" not in row.errors:
        row.error("name", f"This field is required to create a new {kind.noun}.")

    for key, spec in kind.plain.items():
        if key not in raw:
            continue
        value = raw[key]
        if _is_empty(value):
            if spec.required:
                row.error(key, "This field is required.")
            else:
                row.values[key] = spec.empty
            continue
        try:
            row.values[key] = spec.clean(value)
        except _Invalid as exc:
            row.error(key, str(exc))

    _clean_coordinates(kind, row)
    _clean_postal(kind, row)
    if kind.parent_key in raw:
        value = raw[kind.parent_key]
        try:
            row.parent_ext = None if _is_empty(value) else _external_id(value)
        except _Invalid as exc:
            row.error(kind.parent_key, str(exc))
    if kind.has_attributes and "attributes" in raw:
        _clean_attributes(row)


def _clean_coordinates(kind: _Kind, row: _Row) -> None:
    raw = row.raw
    if kind.lat_key not in raw and kind.lon_key not in raw:
        return
    lat_raw, lon_raw = raw.get(kind.lat_key), raw.get(kind.lon_key)
    if _is_empty(lat_raw) and _is_empty(lon_raw):
        row.coords = None
        return
    if _is_empty(lat_raw) or _is_empty(lon_raw):
        missing = kind.lat_key if _is_empty(lat_raw) else kind.lon_key
        row.error(missing, "Give both latitude and longitude, or neither.")
        return
    lat = lon = None
    try:
        lat = _latitude(lat_raw)
    except _Invalid as exc:
        row.error(kind.lat_key, str(exc))
    try:
        lon = _longitude(lon_raw)
    except _Invalid as exc:
        row.error(kind.lon_key, str(exc))
    if lat is None or lon is None:
        return
    if lat == 0 and lon == 0:
        # CRMs export 0,0 for "unknown"; taken literally it would put the account in the Atlantic.
        row.warn(kind.lat_key, "0, 0 is treated as no coordinates.")
        row.coords = None
        return
    row.coords = (lon, lat)


def _clean_postal(kind: _Kind, row: _Row) -> None:
    key = kind.postal_key
    if key not in row.raw:
        return
    value = row.raw[key]
    if _is_empty(value):
        row.postal = ""
        row.values[key] = ""
        return
    country = row.values.get("country") or (row.existing or {}).get("country") or "US"
    if kind.quality_attr is not None and country != "US":
        try:
            row.postal = row.values[key] = _text(10)(value)
        except _Invalid as exc:
            row.error(key, str(exc))
        return
    code = normalize_postal_code(value)
    if code:
        row.postal = row.values[key] = code
        return
    try:
        text = _text(10)(value)
    except _Invalid:
        text = str(value)[:20]
    if kind.quality_attr is None:
        # Reps carry no country, so a foreign postcode is kept as given, just not geocoded.
        row.postal = row.values[key] = text[:10]
        row.warn(key, f"'{text}' is not a US ZIP code, so the home location cannot be looked up.")
    else:
        row.error(key, f"'{text}' is not a US ZIP code (5 digits or ZIP+4); for another country set country.")


def _clean_attributes(row: _Row) -> None:
    value = row.raw["attributes"]
    if value is None:
        return
    if not isinstance(value, Mapping):
        row.error("attributes", "Give custom fields as an object of name → value.")
        return
    merged = dict(row.existing["attributes"]) if row.existing is not None else {}
    for key, item in value.items():
        try:
            # jsonb refuses NUL characters and NaN/Infinity at any depth, so check the whole value.
            encoded = json.dumps({str(key): item}, allow_nan=False, cls=DjangoJSONEncoder)
        except (TypeError, ValueError):
            row.error("attributes", f"The custom field '{key}' holds a value that is not plain JSON.")
            return
        if "\\u0000" in encoded:
            row.error("attributes", "Text may not contain NUL characters.")
            return
        if _is_empty(item):
            merged.pop(str(key), None)
        else:
            merged[str(key)] = item.strip() if isinstance(item, str) else item
    row.values["attributes"] = merged


def _locate(kind: _Kind, work: list[_Row]) -> None:
    """Turn coordinates or postal codes into the location to store, with one centroid query."""
    todo: list[tuple[_Row, str | None]] = []  # code None: exact coordinates
    for row in work:
        if row.errors or (
            row.coords is _UNSET
            and row.postal is _UNSET
            and (kind.quality_attr is None or ("city" not in row.values and "state" not in row.values))
        ):
            continue  # nothing location-related given: the stored location stays
        if isinstance(row.coords, tuple):
            todo.append((row, None))
            continue
        existing = row.existing
        stored_postal = existing[kind.postal_key] if existing is not None else ""
        if (
            row.coords is _UNSET
            and existing is not None
            and row.postal == stored_postal
            and existing["location_x"] is not None
            and (kind.quality_attr is None or existing[kind.quality_attr] == GeocodeQuality.EXACT)
        ):
            # Same postal code and no coordinates in this batch: keep the finer location we have.
            continue
        code = stored_postal if row.postal is _UNSET else row.postal
        country = row.values.get("country") or (existing or {}).get("country") or "US"
        if kind.quality_attr is not None and country != "US":
            code = ""  # the centroid table is US ZIPs only
        todo.append((row, code))

    centroids = postal_code_centroids({code for _, code in todo if code})

    def city_of(row: _Row) -> tuple[str, str]:
        existing = row.existing or {}
        return city_key(
            str(row.values.get("city", existing.get("city", "")) or ""),
            str(row.values.get("state", existing.get("state", "")) or ""),
        )

    # Accounts whose postal code is unknown or missing fall back to their city's centre.
    city_points = (
        city_centroids(city_of(row) for row, code in todo if code is not None and code not in centroids)
        if kind.quality_attr is not None
        else {}
    )
    for row, code in todo:
        if code is None:
            point, quality = row.coords, GeocodeQuality.EXACT
        else:
            point = centroids.get(code)
            quality = GeocodeQuality.POSTAL
            if point is None:
                point, quality = city_points.get(city_of(row)), GeocodeQuality.CITY
            if point is None:
                quality = GeocodeQuality.NONE
            if code and code not in centroids and kind.postal_key not in row.warnings:
                where = "used the city centre" if point is not None else "left without one"
                row.warn(kind.postal_key, f"No location is known for postal code {code}; {where}.")
        row.values[kind.location_attr] = point
        if kind.quality_attr is not None:
            row.values[kind.quality_attr] = quality.value


def _check_hierarchy(
    kind: _Kind, work: list[_Row], first_rows: dict[str, _Row], existing: dict
) -> dict[str, tuple[int, str | None]]:
    """Parent (or manager) links must point at a known row and must not make a loop.

    Rows with errors keep their stored link, so the check runs again until no new error appears:
    a failed parent row can break its children, and its stored link can close a new loop.
    Returns the stored rows it looked at, as `_load_ancestors` does."""
    if not any(row.parent_ext is not _UNSET for row in work):
        return {ext: (obj["id"], obj["parent_ext"]) for ext, obj in existing.items()}
    label = kind.parent_key
    stored = _load_ancestors(kind, work, existing)

    while True:
        before = sum(len(r.errors) for r in work)

        def parent_of(ext: str) -> str | None:
            row = first_rows.get(ext)
            if row is not None and not row.errors and row.parent_ext is not _UNSET:
                return row.parent_ext
            if ext in stored:
                return stored[ext][1]
            return None

        for row in work:
            target = row.parent_ext
            if row.errors or target is _UNSET or target is None:
                continue
            if target == row.external_id:
                row.error(label, f"A {kind.noun} cannot be its own {kind.parent_attr}.")
                continue
            in_batch = first_rows.get(target)
            if target in stored:
                continue
            if in_batch is None:
                row.error(label, f"No {kind.noun} has the external id '{target}', in this batch or stored.")
            elif in_batch.errors:
                row.error(label, f"The {kind.parent_attr} '{target}' (row {in_batch.number}) has errors.")

        state: dict[str, int] = {}  # 1 on the current walk, 2 done
        for row in work:
            if row.errors or row.parent_ext is _UNSET or row.parent_ext is None:
                continue
            path: list[str] = []
            node: str | None = row.external_id
            while node is not None and node not in state:
                state[node] = 1
                path.append(node)
                node = parent_of(node)
            if node is not None and state[node] == 1:
                loop = path[path.index(node) :]
                text = " → ".join([*loop, node])
                for ext in loop:
                    member = first_rows.get(ext)
                    if member is not None and not member.errors and member.parent_ext is not _UNSET:
                        member.error(label, f"This link makes a loop: {text}.")
            for ext in path:
                state[ext] = 2

        if sum(len(r.errors) for r in work) == before:
            return stored


def _load_ancestors(kind: _Kind, work: list[_Row], existing: dict) -> dict[str, tuple[int, str | None]]:
    """external id → (id, stored parent's external id) for every stored row a link can reach.

    One query per level of the stored hierarchy; corporate families and reporting lines are
    shallow, so this is a handful of queries."""
    stored = {ext: (obj["id"], obj["parent_ext"]) for ext, obj in existing.items()}
    frontier = {row.parent_ext for row in work if isinstance(row.parent_ext, str)}
    frontier |= {parent for _, parent in stored.values() if parent}
    seen = set(stored)
    while frontier := frontier - seen:
        seen |= frontier
        found = list(
            kind.model.objects.filter(_external_id_in(frontier))
            .order_by()
            .values_list("external_id", "pk", f"{kind.parent_attr}__external_id")
        )
        for ext, pk, parent in found:
            stored[ext] = (pk, parent)
        frontier = {parent for _, _, parent in found if parent}
    return stored


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return abs(a[0] - b[0]) <= LOCATION_TOLERANCE and abs(a[1] - b[1]) <= LOCATION_TOLERANCE
    return a == b


def _parent_changed(row: _Row) -> bool:
    return row.parent_ext is not _UNSET and row.parent_ext != row.existing["parent_ext"]


def _decide(kind: _Kind, row: _Row) -> str:
    existing = row.existing
    if existing is None:
        return CREATED
    changed = [key for key, value in row.values.items() if not _same(value, _current(kind, existing, key))]
    # Keep only the changed values; the writer fills the other columns of an UPDATE from what it loaded.
    row.values = {key: row.values[key] for key in changed}
    if _parent_changed(row):
        changed.append(kind.parent_attr)
    return UPDATED if changed else UNCHANGED


def _write(kind: _Kind, work: list[_Row], stored: dict, progress: Progress | None) -> dict[str, int]:
    """Insert the new rows and update the changed ones: each set is copied into a staging table and
    written by one INSERT ... SELECT or UPDATE ... FROM.

    New rows get their ids from the table's sequence first, so a row can point at a parent created
    later in the same batch without a second pass (foreign keys are checked at commit).
    Why not bulk_create/bulk_update: for 10,000 rows they took 8 s each (a CASE per field per row,
    a GEOS point per row); COPY binds nothing per value and PostGIS makes the points."""
    meta = kind.model._meta
    pk_field, parent_field = meta.pk, meta.get_field(kind.parent_attr)
    ids = {ext: pk for ext, (pk, _) in stored.items()}
    creates = [r for r in work if r.status == CREATED]
    updates = [r for r in work if r.status == UPDATED]
    now = timezone.now()
    tick = _Ticker(progress, "write", len(creates) + len(updates))

    if creates:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [meta.db_table, pk_field.column, len(creates)],
            )
            for row, (pk,) in zip(creates, cursor.fetchall(), strict=True):
                ids[row.external_id] = pk
        fields = list(meta.concrete_fields)
        defaults = {f.attname: f.get_default() for f in fields}
        records = []
        for row in creates:
            record = dict(defaults)
            record.update(row.values)  # value keys are field names; for these fields also attnames
            record[pk_field.attname] = ids[row.external_id]
            record["external_id"] = row.external_id
            record["created"] = record["updated"] = now
            record[parent_field.attname] = ids[row.parent_ext] if isinstance(row.parent_ext, str) else None
            records.append(record)
        _copy_write(kind.model, fields, records, tick, update=False)

    if updates:
        changed = {name for row in updates for name in row.values}
        if any(_parent_changed(row) for row in updates):
            changed.add(kind.parent_attr)
        # Every row sets the same columns; a column a row leaves alone gets the value we loaded, which
        # cannot have moved since, because the rows are locked.
        fields = [pk_field, meta.get_field("updated")] + [meta.get_field(name) for name in sorted(changed)]
        records = []
        for row in updates:
            obj = row.existing
            record = {pk_field.attname: obj["id"], "updated": now}
            for f in fields[2:]:
                if f.name in row.values:
                    record[f.attname] = row.values[f.name]
                elif f is parent_field:
                    target = row.parent_ext if row.parent_ext is not _UNSET else obj["parent_ext"]
                    record[f.attname] = None if target is None else ids[target]
                else:
                    record[f.attname] = _current(kind, obj, f.name)
            records.append(record)
        _copy_write(kind.model, fields, records, tick, update=True)
    return ids


class _Ticker:
    """Calls progress(stage, done, total) every PROGRESS_EVERY rows and at the end."""

    def __init__(self, progress: Progress | None, stage: str, total: int):
        self.progress, self.stage, self.total, self.done = progress, stage, total, 0

    def __call__(self) -> None:
        self.done += 1
        if self.progress and (self.done % PROGRESS_EVERY == 0 or self.done == self.total):
            self.progress(self.stage, self.done, self.total)


def _current(kind: _Kind, stored: dict[str, Any], name: str) -> Any:
    """A loaded row's value of field `name`; its location as (x, y) or None."""
    if name == kind.location_attr:
        return None if stored["location_x"] is None else (stored["location_x"], stored["location_y"])
    return stored[name]


_STAGE = "tessera_bulk_stage"


def _copy_write(model: type[models.Model], fields: list, records: list[dict], tick: _Ticker, *, update: bool):
    """COPY `records` into a temporary table, then INSERT them into, or UPDATE by pk, the model's table.

    Identifiers come from model metadata, never from input; every value travels through COPY."""
    qn = connection.ops.quote_name
    stage_columns, exprs, getters = [], [], []
    for f in fields:
        column = qn(f.column)
        if isinstance(f, GeometryField):
            # Points are made in PostGIS from two floats: no GEOS object per row in Python.
            x, y = qn(f"{f.column}__x"), qn(f"{f.column}__y")
            stage_columns += [f"{x} float8", f"{y} float8"]
            exprs.append(f"ST_SetSRID(ST_MakePoint(v.{x}, v.{y}), {int(f.srid)})")
            getters += [_axis(f.attname, 0), _axis(f.attname, 1)]
        elif isinstance(f, ArrayField):
            # Lists travel as JSON text: one format for any element type, and no array quoting.
            stage_columns.append(f"{column} jsonb")
            exprs.append(
                f"CASE WHEN v.{column} IS NULL THEN NULL ELSE "
                f"ARRAY(SELECT e FROM jsonb_array_elements_text(v.{column}) WITH ORDINALITY AS a(e, i) "
                f"ORDER BY i)::{f.db_type(connection)} END"
            )
            getters.append(_json(f.attname))
        elif isinstance(f, models.JSONField):
            stage_columns.append(f"{column} jsonb")
            exprs.append(f"v.{column}")
            getters.append(_json(f.attname))
        else:
            stage_columns.append(f"{column} {f.db_type(connection)}")
            exprs.append(f"v.{column}")
            getters.append(_plain(f.attname))

    table = qn(model._meta.db_table)
    if not update:
        _copy_insert(model, fields, records, tick)
        return
    if update:
        pk = qn(model._meta.pk.column)
        sets = ", ".join(f"{qn(f.column)} = {e}" for f, e in zip(fields[1:], exprs[1:], strict=True))
        statement = f"UPDATE {table} AS t SET {sets} FROM {_STAGE} AS v WHERE t.{pk} = v.{pk}"
    else:
        statement = (
            f"INSERT INTO {table} ({', '.join(qn(f.column) for f in fields)}) "
            f"SELECT {', '.join(exprs)} FROM {_STAGE} AS v"
        )
    with connection.cursor() as cursor:
        # Dropped below on success; on failure the savepoint of the service takes it away.
        cursor.execute(f"CREATE TEMPORARY TABLE {_STAGE} ({', '.join(stage_columns)}) ON COMMIT DROP")
        with cursor.copy(f"COPY {_STAGE} FROM STDIN") as copy:
            for record in records:
                copy.write_row([get(record) for get in getters])
                tick()
        cursor.execute(statement)
        cursor.execute(f"DROP TABLE {_STAGE}")


def _copy_insert(model: type[models.Model], fields: list, records: list[dict], tick: _Ticker) -> None:
    """COPY new rows straight into the model's table: no staging table and no INSERT ... SELECT.

    At 100,000 accounts this halves the database's share of the work: each row is written and
    indexed once. Points travel as hex EWKB (exact, no text parsing of coordinates), lists as
    PostgreSQL arrays, JSON as text."""
    qn = connection.ops.quote_name
    names = [f.attname for f in fields]
    points = [(i, int(f.srid)) for i, f in enumerate(fields) if isinstance(f, GeometryField)]
    documents = [i for i, f in enumerate(fields) if isinstance(f, models.JSONField)]
    pack, flag = _EWKB_POINT.pack, _EWKB_POINT_WITH_SRID
    encode = _JSON_ENCODER.encode
    columns = ", ".join(qn(f.column) for f in fields)
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {qn(model._meta.db_table)} ({columns}) FROM STDIN") as copy,
    ):
        for record in records:
            values = [record[name] for name in names]
            for i, srid in points:
                point = values[i]
                if point is not None:
                    values[i] = pack(1, flag, srid, point[0], point[1]).hex()
            for i in documents:
                document = values[i]
                if document is not None:
                    values[i] = "{}" if document == {} else encode(document)
            copy.write_row(values)
            tick()


_JSON_ENCODER = DjangoJSONEncoder()
_EWKB_POINT = struct.Struct("<BIIdd")
_EWKB_POINT_WITH_SRID = 0x20000001  # wkbPoint with the EWKB SRID flag


def _plain(name: str) -> Callable[[dict], Any]:
    return lambda record: record[name]


def _axis(name: str, index: int) -> Callable[[dict], Any]:
    return lambda record: None if record[name] is None else record[name][index]


def _json(name: str) -> Callable[[dict], Any]:
    return lambda record: None if record[name] is None else json.dumps(record[name], cls=DjangoJSONEncoder)


# --- deletes -------------------------------------------------------------------------------------


@transaction.atomic
def account_delete(*, account: Account, actor=None) -> None:
    """Delete an account and its territory assignments.

    Refused while bookings point at it: they are attainment history, and deleting the account would
    delete them too. Such an account is kept with status inactive (or churned) instead."""
    bookings = account.bookings.count()  # reverse relation of quotas.Booking; no import of quotas
    if bookings:
        raise ApplicationError(
            f"Account {account.external_id} has {bookings} booking(s), which would be deleted with it; "
            "set its status to inactive or churned instead.",
            {"bookings": [f"{bookings} booking(s) refer to this account."]},
            status=409,
        )
    logger.info("account %s deleted by %s", account.external_id, actor or "system")
    account.delete()


@transaction.atomic
def rep_delete(*, rep: Rep, actor=None) -> None:
    """Delete a rep. Refused while they belong to a territory of any plan (removing them there is a
    plan edit, with its history: do that first) or have quotas; otherwise set active to false."""
    territories = rep.memberships.count()  # reverse relation of territories.TerritoryMembership
    if territories:
        raise ApplicationError(
            f"Rep {rep.external_id} belongs to {territories} territory(ies) in plans; remove them there "
            "first, or set active to false instead.",
            {"territories": [f"Member of {territories} territory(ies)."]},
            status=409,
        )
    quotas = rep.quotas.count()  # reverse relation of quotas.Quota, which would be deleted with the rep
    if quotas:
        raise ApplicationError(
            f"Rep {rep.external_id} has {quotas} quota(s), which would be deleted with them; set active to "
            "false instead.",
            {"quotas": [f"{quotas} quota(s) belong to this rep."]},
            status=409,
        )
    logger.info("rep %s deleted by %s", rep.external_id, actor or "system")
    rep.delete()


# --- API tokens --------------------------------------------------------------------------------

TOKEN_KEY_PREFIX_LENGTH = 12


@transaction.atomic
def api_token_create(*, user, name: str, scopes: Iterable[str]) -> tuple[ApiToken, str]:
    """A new token for `user`; returns it with its key, which is shown once and stored only hashed."""
    chosen = sorted(set(scopes))
    unknown = [s for s in chosen if s not in TokenScope.values]
    if unknown:
        raise ApplicationError(
            f"Unknown token scope(s): {', '.join(unknown)}; use {', '.join(TokenScope.values)}.",
            {"scopes": [f"unknown: {', '.join(unknown)}"]},
        )
    if not chosen:
        raise ApplicationError("A token needs at least one scope.", {"scopes": ["This field is required."]})
    if not name or not name.strip():
        raise ApplicationError("A token needs a name.", {"name": ["This field is required."]})
    key = ApiToken.new_key()
    token = ApiToken.objects.create(
        user=user,
        name=name.strip(),
        prefix=key[:TOKEN_KEY_PREFIX_LENGTH],
        key_hash=ApiToken.hash_key(key),
        scopes=chosen,
    )
    return token, key


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token at once; its key stops working on the next request."""
    token.revoked = True
    token.save(update_fields=["revoked", "updated"])
    return token

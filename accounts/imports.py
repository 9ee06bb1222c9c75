"""Reading account and rep files (CSV or XLSX) into rows for the bulk upsert services.

Two steps, each usable alone (the REST endpoint's CSV body uses both):
- `read_table` / `read_csv_bytes` / `read_xlsx` turn a file into a header and records, each record
  with its row number in the file (header = row 1, so the first data row is row 2, as a spreadsheet
  shows it). CSV encoding and delimiter are detected; the choice is reported in `Table.notes`.
- `map_table` turns records into dicts keyed by service field names, through an explicit column
  mapping and then default aliases ("Zip" → postal_code). Unknown account columns become custom
  fields (`attributes`); unknown rep columns are ignored with a note.

A problem with the whole file or its columns raises ApplicationError before any row is processed.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera_common.errors import ApplicationError

from .services import ACCOUNT_FIELDS, REP_FIELDS, Progress

ATTRIBUTE_PREFIX = "attributes."
IGNORE = "-"
DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}

# Share of control characters above which decoded "text" is really a binary file. Real CSV exports
# have none; random bytes read as Latin-1 give about 12%.
_BINARY_SHARE = 0.01


@dataclass
class Table:
    """A file's header and non-blank records, each as (row number in the file, cells)."""

    headers: list[str]
    records: list[tuple[int, list[Any]]]
    description: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ColumnSpec:
    """The fields a kind of file may fill, their default header aliases and its required columns."""

    noun: str
    fields: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]]
    required: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    custom_fields: bool


@dataclass
class MappedRows:
    """Rows keyed by field name, ready for a bulk upsert, with what the mapping decided."""

    rows: list[dict[str, Any]]
    row_numbers: list[int]
    input_errors: dict[int, dict[str, list[str]]]
    columns: dict[str, str]
    notes: list[str] = field(default_factory=list)


def header_key(text: str) -> str:
    """Headers match case-, space- and punctuation-insensitively: "Zip/Postal Code" → "zip postal code"."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", str(text).lower()).split())


ACCOUNT_COLUMNS = ColumnSpec(
    noun="account",
    fields=tuple(f for f in ACCOUNT_FIELDS if f != "attributes"),
    aliases={
        "external_id": (
            "external id", "externalid", "id", "account id", "crm id", "record id", "account external id",
            "salesforce id", "sfdc id", "hubspot id",
        ),
        "name": ("name", "account name", "account", "company", "company name", "customer", "customer name"),
        "latitude": ("latitude", "lat", "billing latitude", "shipping latitude"),
        "longitude": ("longitude", "lon", "lng", "long", "billing longitude", "shipping longitude"),
        "street": ("street", "address", "street address", "address line 1", "address 1", "billing street"),
        "city": ("city", "town", "billing city"),
        "state": (
            "state", "state province", "province", "state code", "billing state", "billing state province",
        ),
        "postal_code": (
            "postal code", "postcode", "post code", "zip", "zip code", "zipcode", "zip postal code",
            "billing zip", "billing postal code", "billing zip postal code",
        ),
        "country": ("country", "country code", "billing country"),
        "industry": ("industry", "vertical", "sector"),
        "segment": ("segment", "size segment", "customer segment", "market segment"),
        "employees": ("employees", "employee count", "number of employees", "numberofemployees", "headcount"),
        "revenue": ("revenue", "annual revenue", "annualrevenue", "arr"),
        "potential": ("potential", "market potential", "revenue potential", "potential revenue"),
        "workload_hours": ("workload hours", "workload", "effort hours"),
        "status": ("status", "account status"),
        "lead_source": ("lead source", "account source", "source"),
        "parent_external_id": (
            # Not "Parent Account" or "Parent": CRM exports put the parent's name there, not its id.
            "parent external id", "parent account id", "parent id", "parentid", "parent crm id",
        ),
    },
    required=("external_id", "name"),
    pairs=(("latitude", "longitude"),),
    custom_fields=True,
)  # fmt: skip

REP_COLUMNS = ColumnSpec(
    noun="rep",
    fields=REP_FIELDS,
    aliases={
        "external_id": ("external id", "externalid", "id", "rep id", "employee id", "crm id", "user id"),
        "name": ("name", "rep name", "full name", "rep", "seller", "sales rep"),
        "email": ("email", "e mail", "email address", "rep email"),
        "home_latitude": ("home latitude", "latitude", "lat", "home lat"),
        "home_longitude": ("home longitude", "longitude", "lon", "lng", "long", "home lon", "home lng"),
        "home_postal_code": (
            "home postal code", "postal code", "home zip", "zip", "zip code", "zipcode", "postcode",
            "home zip code",
        ),
        "capacity_fte": ("capacity fte", "capacity", "fte"),
        "specialties": ("specialties", "specialty", "specialities", "speciality", "focus"),
        "manager_external_id": (
            # Not "Manager" or "Reports To": those columns usually hold a name.
            "manager external id", "manager id", "reports to id", "manager rep id",
        ),
        "title": ("title", "job title", "role"),
        "active": ("active", "is active", "enabled", "status"),
    },
    required=("external_id", "name"),
    pairs=(("home_latitude", "home_longitude"),),
    custom_fields=False,
)  # fmt: skip

SPECS = {"accounts": ACCOUNT_COLUMNS, "reps": REP_COLUMNS}


# --- reading --------------------------------------------------------------------------------------


def read_table(
    path: str | Path,
    *,
    sheet: str | None = None,
    delimiter: str | None = None,
    progress: Progress | None = None,
) -> Table:
    """Read a CSV or XLSX file, told apart by content rather than by name.

    `progress("read", rows, total)` is called while a workbook is read (openpyxl reads about
    5,000 rows a second, so a large sheet takes a while); CSV reading is too quick to need it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ApplicationError(f"Cannot read {path}: {exc.strerror}.") from None
    if data.startswith(b"PK\x03\x04"):
        return read_xlsx(io.BytesIO(data), sheet=sheet, progress=progress)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ApplicationError(
            "This is an old Excel .xls file; save it as .xlsx or CSV (UTF-8) and try again."
        )
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        raise ApplicationError(f"{path.name} is not a valid .xlsx file (it is not a zip archive).")
    if sheet:
        raise ApplicationError("--sheet applies to .xlsx files only.")
    return read_csv_bytes(data, delimiter=delimiter)


def decode_text(data: bytes) -> tuple[str, str, list[str]]:
    """Decode CSV bytes: a BOM decides; else UTF-8; else Windows-1252, or Latin-1 for the five bytes
    Windows-1252 leaves undefined. Anything but clean UTF-8 comes with a note saying so and why."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding, []
            except UnicodeDecodeError as exc:
                raise ApplicationError(
                    f"The file starts like {encoding} text but is not: {exc.reason}."
                ) from None
    if b"\x00" in data[:65536]:
        raise _binary()
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        why = f"byte 0x{data[exc.start]:02X} on line {line} is not UTF-8"

    # Only the bytes that are not UTF-8 are read as Windows-1252: a file pasted together from two
    # exports keeps its UTF-8 part intact instead of turning "é" into "Ã©".
    text = data.decode("utf-8", errors=_CP1252_FALLBACK)
    sample = text[:65536]
    controls = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\t\r\n") or 0x7F <= ord(ch) < 0xA0)
    if sample and controls / len(sample) > _BINARY_SHARE:
        raise _binary()
    if any(b in data for b in _CP1252_UNDEFINED):
        encoding, name = "latin-1", "Latin-1"
    else:
        encoding, name = "cp1252", "Windows-1252"
    mixed = text != data.decode("cp1252", errors=_CP1252_FALLBACK)
    what = f"UTF-8 mixed with {name}" if mixed else f"{name} ({encoding})"
    note = f"Read as {what} because {why}; if accented letters look wrong, save the file as CSV UTF-8."
    return text, ("utf-8+" if mixed else "") + encoding, [note]


# Windows-1252 leaves five bytes undefined; Latin-1 maps them to the same code points.
_CP1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")
_CP1252_FALLBACK = "tessera-cp1252-fallback"


def _cp1252_fallback(exc: UnicodeDecodeError) -> tuple[str, int]:
    bad = exc.object[exc.start : exc.end]
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in bad), exc.end


codecs.register_error(_CP1252_FALLBACK, _cp1252_fallback)


def _binary() -> ApplicationError:
    return ApplicationError(
        "The file looks binary, not CSV text. Upload a CSV (UTF-8 preferred) or an .xlsx workbook."
    )


def sniff_delimiter(first_line: str) -> str:
    """The delimiter that occurs most often in the header line; a comma when none does."""
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties go to the earlier, more usual delimiter
    return best if counts[best] else ","


def read_csv_bytes(data: bytes, *, delimiter: str | None = None) -> Table:
    """Parse CSV bytes (encoding and delimiter detected unless given)."""
    if not data.strip():
        raise ApplicationError("The file is empty.")
    text, encoding, notes = decode_text(data)
    if not text.strip():
        raise ApplicationError("The file is empty.")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if delimiter is None:
        delimiter = sniff_delimiter(first_line)
    elif delimiter == "\\t":
        delimiter = "\t"
    if len(delimiter) != 1:
        raise ApplicationError(f"The delimiter must be one character (got {delimiter!r}).")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        # Records are numbered as a spreadsheet shows them: a quoted line break stays in one row.
        for number, cells in enumerate(reader, 1):
            rows.append((number, cells))
    except csv.Error as exc:
        raise ApplicationError(f"The CSV cannot be parsed at row {reader.line_num}: {exc}.") from None
    description = f"CSV, {encoding}, {_DELIMITER_NAMES.get(delimiter, repr(delimiter))}-separated"
    return _table(rows, description, notes)


def read_xlsx(source: Any, *, sheet: str | None = None, progress: Progress | None = None) -> Table:
    """Read the first sheet (or `sheet`) of a workbook, cell values as Excel stores them."""
    from openpyxl import load_workbook

    try:
        # read_only streams rows instead of building every cell object; data_only gives formula results.
        book = load_workbook(source, read_only=True, data_only=True)
    except _XLSX_ERRORS as exc:
        # A zip that is not a workbook fails with KeyError (a missing part) or BadZipFile.
        raise ApplicationError(f"The Excel file cannot be read ({type(exc).__name__}: {exc}).") from None
    try:
        if sheet is None:
            worksheet = book.worksheets[0]
        elif sheet in book.sheetnames:
            worksheet = book[sheet]
        else:
            raise ApplicationError(f"No sheet named '{sheet}'; the sheets are: {', '.join(book.sheetnames)}.")
        total = worksheet.max_row or 0  # from the sheet's stored dimension; 0 when it has none
        rows = []
        try:
            for n, values in enumerate(worksheet.iter_rows(values_only=True), 1):
                rows.append((n, [_cell(v) for v in values]))
                if progress and n % 1000 == 0:
                    progress("read", n, max(total, n))
        except _XLSX_ERRORS as exc:
            raise ApplicationError(f"The sheet '{worksheet.title}' cannot be read ({exc}).") from None
    finally:
        book.close()
    if progress:
        progress("read", len(rows), len(rows))
    return _table(rows, f"Excel sheet '{worksheet.title}'", [])


_XLSX_ERRORS = (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError)


def _cell(value: Any) -> Any:
    # Dates go to text now so that custom fields stay JSON; numbers stay numbers for the services.
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _table(rows: list[tuple[int, list[Any]]], description: str, notes: list[str]) -> Table:
    records = [(n, cells) for n, cells in rows if not all(_blank(c) for c in cells)]
    if not records:
        raise ApplicationError("The file is empty.")
    header_number, header_cells = records[0]
    # Trailing empty header cells are spreadsheet formatting, not columns.
    while header_cells and _blank(header_cells[-1]):
        header_cells = header_cells[:-1]
    headers = ["" if _blank(c) else str(c).strip() for c in header_cells]
    if not records[1:]:
        raise ApplicationError(f"The file has a header row (row {header_number}) but no data rows.")
    return Table(headers=headers, records=records[1:], description=description, notes=notes)


# --- mapping --------------------------------------------------------------------------------------


def parse_mapping(text: str) -> dict[str, str]:
    """'CRM Col=field,Other=-' → {"CRM Col": "field", "Other": "-"}. "-" ignores a column."""
    mapping = {}
    for part in text.split(","):
        if not part.strip():
            continue
        mapping.update(_mapping_item(part, f"'{part.strip()}'"))
    return mapping


def read_mapping_file(path: str | Path) -> dict[str, str]:
    """One `column = field` per line; blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApplicationError(f"Cannot read the mapping file {path}: {exc}.") from None
    mapping = {}
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            mapping.update(_mapping_item(line, f"line {number} of {path}"))
    return mapping


def _mapping_item(text: str, where: str) -> dict[str, str]:
    column, sep, target = text.rpartition("=")
    if not sep or not column.strip():
        raise ApplicationError(f"Mapping {where} must look like 'Column name=field'.")
    return {column.strip(): target.strip() or IGNORE}


def map_table(table: Table, spec: ColumnSpec, mapping: Mapping[str, str] | None = None) -> MappedRows:
    """Decide which column fills which field, check the columns, and build one dict per record."""
    columns = _resolve_columns(table.headers, spec, mapping or {})
    notes = list(table.notes)
    explicit = {header_key(column) for column in mapping or {}}
    ignored = [h for h, target in columns.items() if target == IGNORE and header_key(h) not in explicit]
    if ignored:
        notes.append(f"Ignored columns (no {spec.noun} field has that name): {', '.join(ignored)}.")
    custom_columns = [h for h, target in columns.items() if target == ATTRIBUTE_PREFIX + h]
    if custom_columns:
        notes.append(f"Custom fields (kept in attributes): {', '.join(custom_columns)}.")
    unnamed = [i + 1 for i, h in enumerate(table.headers) if not h]
    if unnamed:
        notes.append(f"Ignored columns without a header: {', '.join(map(str, unnamed))}.")

    plan = [(i, columns[h]) for i, h in enumerate(table.headers) if h and columns[h] != IGNORE]
    width = len(table.headers)
    rows, numbers, input_errors = [], [], {}
    for number, cells in table.records:
        row: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for i, target in plan:
            value = cells[i] if i < len(cells) else None
            if target.startswith(ATTRIBUTE_PREFIX):
                custom[target[len(ATTRIBUTE_PREFIX) :]] = None if _blank(value) else value
            else:
                row[target] = value
        if custom:
            row["attributes"] = custom
        if any(not _blank(c) for c in cells[width:]):
            used = max(i for i, c in enumerate(cells) if not _blank(c)) + 1
            input_errors[len(rows)] = {
                "non_field_errors": [
                    f"This row has values in {used} columns but the header names {width}; in a CSV, "
                    "look for a value with the delimiter in it and no quotes around it."
                ]
            }
        rows.append(row)
        numbers.append(number)
    return MappedRows(rows=rows, row_numbers=numbers, input_errors=input_errors, columns=columns, notes=notes)


def _resolve_columns(headers: list[str], spec: ColumnSpec, mapping: Mapping[str, str]) -> dict[str, str]:
    """header → field, "attributes.<name>" or "-". Raises ApplicationError naming every problem."""
    problems = []
    by_key: dict[str, str] = {}
    for header in headers:
        if not header:
            continue
        key = header_key(header)
        if key in by_key:
            problems.append(f"Columns '{by_key[key]}' and '{header}' have the same name.")
        by_key[key] = header

    columns: dict[str, str] = {}
    for column, target in mapping.items():
        header = by_key.get(header_key(column))
        if header is None:
            problems.append(f"The mapping names a column '{column}' that is not in the file.")
            continue
        if target == IGNORE or target.lower() in spec.fields:
            columns[header] = target.lower()
        elif target.startswith(ATTRIBUTE_PREFIX) and spec.custom_fields and target[len(ATTRIBUTE_PREFIX) :]:
            columns[header] = target
        else:
            custom = ", attributes.<name> for a custom field" if spec.custom_fields else ""
            problems.append(
                f"The mapping sends '{column}' to '{target}', which is not a {spec.noun} field "
                f"(fields: {', '.join(spec.fields)}{custom}; '-' ignores a column)."
            )

    alias_to_field = {alias: f for f, aliases in spec.aliases.items() for alias in aliases}
    alias_to_field.update({header_key(f): f for f in spec.fields})
    for key, header in by_key.items():
        if header in columns:
            continue
        target = alias_to_field.get(key)
        if target is not None:
            columns[header] = target
        elif spec.custom_fields:
            columns[header] = ATTRIBUTE_PREFIX + header
        else:
            columns[header] = IGNORE

    filled: dict[str, list[str]] = {}
    for header, target in columns.items():
        if target != IGNORE:
            filled.setdefault(target, []).append(header)
    for target, sources in filled.items():
        if len(sources) > 1:
            quoted = " and ".join(f"'{s}'" for s in sources)
            problems.append(
                f"Columns {quoted} would both fill {target}; map the one to skip with '{sources[-1]}=-'."
            )
    missing = [f for f in spec.required if f not in filled]
    if missing:
        hints = "; ".join(
            f"{f} (e.g. {', '.join(repr(a.title()) for a in spec.aliases[f][:3])})" for f in missing
        )
        found = ", ".join(f"'{h}'" for h in headers if h) or "none"
        problems.append(
            f"Missing required columns: {hints}. Columns found: {found}. "
            f"Name yours with --map 'Your column={missing[0]}'."
        )
    for a, b in spec.pairs:
        if (a in filled) != (b in filled):
            have, lack = (a, b) if a in filled else (b, a)
            problems.append(f"There is a {have} column but no {lack} column; give both or neither.")
    if problems:
        raise ApplicationError(" ".join(problems), {"columns": problems})
    return columns


def load_rows(
    path: str | Path,
    kind: str,
    *,
    mapping: Mapping[str, str] | None = None,
    sheet: str | None = None,
    delimiter: str | None = None,
    progress: Progress | None = None,
) -> tuple[Table, MappedRows]:
    """Read and map a file for `kind` ("accounts" or "reps") in one call."""
    table = read_table(path, sheet=sheet, delimiter=delimiter, progress=progress)
    return table, map_table(table, SPECS[kind], mapping)

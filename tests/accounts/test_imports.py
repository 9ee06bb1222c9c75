"""File imports: reading CSV/XLSX, column mapping, and the import_accounts / import_reps commands."""

from __future__ import annotations

import csv
import os
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.gis.geos import Point
from django.core.management import CommandError, call_command
from openpyxl import Workbook

from accounts.imports import (
    ACCOUNT_COLUMNS,
    REP_COLUMNS,
    decode_text,
    header_key,
    load_rows,
    map_table,
    parse_mapping,
    read_csv_bytes,
    read_table,
)
from accounts.models import Account, PostalCode, Rep
from tessera_common.errors import ApplicationError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "imports"


@pytest.fixture
def zips(db):
    for code, lon, lat in (
        ("02134", -71.1226, 42.3539),
        ("94105", -122.3892, 37.7898),
        ("10001", -73.9967, 40.7506),
    ):
        PostalCode.objects.create(code=code, location=Point(lon, lat, srid=4326))


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def xlsx(
    tmp_path: Path, rows: list[list], name: str = "accounts.xlsx", sheet: str = "Accounts", extra=None
) -> Path:
    book = Workbook()
    ws = book.active
    ws.title = sheet
    for row in rows:
        ws.append(row)
    if extra:
        other = book.create_sheet(extra[0])
        for row in extra[1]:
            other.append(row)
    path = tmp_path / name
    book.save(path)
    return path


def run(command: str, *args) -> str:
    out = StringIO()
    call_command(command, *map(str, args), stdout=out, stderr=StringIO())
    return out.getvalue()


def fails(command: str, *args) -> tuple[str, str]:
    """Run a command that must fail; returns (the CommandError message, what it printed)."""
    out = StringIO()
    with pytest.raises(CommandError) as info:
        call_command(command, *map(str, args), stdout=out, stderr=StringIO())
    return str(info.value), out.getvalue()


# --- reading --------------------------------------------------------------------------------------


def test_header_key_ignores_case_spaces_and_punctuation():
    assert header_key("  Billing Zip/Postal Code ") == "billing zip postal code"
    assert header_key("external_id") == header_key("External-ID") == "external id"


def test_aliases_are_unambiguous():
    for spec in (ACCOUNT_COLUMNS, REP_COLUMNS):
        seen = {}
        for field, aliases in spec.aliases.items():
            assert field in spec.fields
            for alias in aliases:
                assert alias == header_key(alias), alias
                assert seen.setdefault(alias, field) == field, f"{alias} maps to {seen[alias]} and {field}"


@pytest.mark.parametrize(
    "text, delimiter",
    [
        ("id,name\n1,A\n", ","),
        ("id;name\n1;A,B\n", ";"),
        ("id\tname\n1\tA, B; C\n", "\t"),
        ("id|name\n1|A\n", "|"),
        ("id\n1\n", ","),
    ],
)
def test_delimiter_is_sniffed_from_the_header(text, delimiter):
    table = read_csv_bytes(text.encode())
    assert table.records[0][1][: len(table.headers)] == text.splitlines()[1].split(delimiter)


def test_encodings_utf8_bom_and_utf16_decode_without_a_note():
    for data, encoding in (
        ("name\nCafé\n".encode(), "utf-8"),
        ("name\nCafé\n".encode("utf-8-sig"), "utf-8-sig"),
        ("name\nCafé\n".encode("utf-16"), "utf-16"),
    ):
        text, used, notes = decode_text(data)
        assert (text.lstrip("\ufeff"), used, notes) == ("name\nCafé\n", encoding, [])


def test_cp1252_is_detected_with_a_note_naming_the_bad_byte():
    text, used, notes = decode_text("id,name\n1,Café “Lumière” – Zoë\n".encode("cp1252"))
    assert used == "cp1252" and text == "id,name\n1,Café “Lumière” – Zoë\n"
    assert "Windows-1252" in notes[0] and "line 2" in notes[0] and "0xE9" in notes[0]


def test_latin1_is_the_last_resort():
    # 0x81 is undefined in cp1252, so only Latin-1 decodes this (as a control character, but rarely).
    data = ("id,name\n" + "1,Zoë\n" * 200).encode("latin-1") + b"2,x\x81y\n"
    text, used, notes = decode_text(data)
    assert used == "latin-1" and "Zoë" in text and "Latin-1" in notes[0]


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty"),
        (b"  \n\r\n\t\n", "empty"),
        (b",,,\n,,\n", "empty"),
        (b"external_id,name\n", "no data rows"),
        (b"external_id,name\n,\n\n", "no data rows"),
        (bytes(range(256)) * 20, "binary"),
        (os.urandom(4096).replace(b"\x00", b"") + b"\x00", "binary"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)) * 10, "binary"),
    ],
)
def test_empty_header_only_and_binary_files_are_refused(data, fragment):
    with pytest.raises(ApplicationError) as info:
        read_csv_bytes(data)
    assert fragment in info.value.message


def test_record_numbers_count_a_quoted_line_break_as_one_row_and_skip_blank_lines():
    table = read_csv_bytes(b'id,name\n1,"two\nlines"\n\n2,B\n')
    assert [n for n, _ in table.records] == [2, 4]


def test_xlsx_reads_first_sheet_or_named_sheet(tmp_path):
    path = xlsx(tmp_path, [["id", "name"], [1, "A"]], extra=("Reps", [["id", "name"], ["R1", "Rita"]]))
    assert read_table(path).records == [(2, [1, "A"])]
    assert read_table(path, sheet="Reps").records == [(2, ["R1", "Rita"])]
    with pytest.raises(ApplicationError, match="No sheet named 'Nope'; the sheets are: Accounts, Reps"):
        read_table(path, sheet="Nope")


def test_xlsx_is_recognised_by_content_and_xls_and_broken_files_are_refused(tmp_path):
    real = xlsx(tmp_path, [["id", "name"], [1, "A"]])
    renamed = tmp_path / "export.csv"
    renamed.write_bytes(real.read_bytes())
    assert read_table(renamed).headers == ["id", "name"]

    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)
    with pytest.raises(ApplicationError, match=r"old Excel \.xls"):
        read_table(old)
    fake = tmp_path / "fake.xlsx"
    fake.write_bytes(b"id,name\n1,A\n")
    with pytest.raises(ApplicationError, match="not a valid .xlsx"):
        read_table(fake)
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(real.read_bytes()[:200])
    with pytest.raises(ApplicationError, match="cannot be read"):
        read_table(broken)


# --- mapping --------------------------------------------------------------------------------------


def test_default_aliases_and_custom_fields():
    table = read_csv_bytes(
        b"Account ID,Company,Zip,Lat,Lng,Parent Account ID,Annual Revenue,Customer Tier\n"
        b"A1,X,2134,1,2,P,5,Gold\n"
    )
    mapped = map_table(table, ACCOUNT_COLUMNS)
    assert mapped.rows == [
        {
            "external_id": "A1",
            "name": "X",
            "postal_code": "2134",
            "latitude": "1",
            "longitude": "2",
            "parent_external_id": "P",
            "revenue": "5",
            "attributes": {"Customer Tier": "Gold"},
        }
    ]
    assert mapped.row_numbers == [2]
    assert any("Customer Tier" in note for note in mapped.notes)


def test_explicit_mapping_wins_over_aliases_and_can_ignore_columns():
    table = read_csv_bytes(b"Acct,Name,Id,Notes,Tier\nA1,X,999,secret,Gold\n")
    mapping = parse_mapping("acct=external_id, Id=-, Notes=, Tier=attributes.tier")
    mapped = map_table(table, ACCOUNT_COLUMNS, mapping)
    assert mapped.rows == [{"external_id": "A1", "name": "X", "attributes": {"tier": "Gold"}}]


def test_rep_files_ignore_unknown_columns_with_a_note():
    table = read_csv_bytes(b"Rep ID,Name,Favourite Colour\nR1,Rita,blue\n")
    mapped = map_table(table, REP_COLUMNS)
    assert mapped.rows == [{"external_id": "R1", "name": "Rita"}]
    assert "Favourite Colour" in mapped.notes[0]


@pytest.mark.parametrize(
    "header, mapping, fragments",
    [
        (b"Company,Zip\n", None, ["Missing required columns: external_id", "'Company', 'Zip'", "--map"]),
        (b"Id,Zip\n", None, ["Missing required columns: name"]),
        (b"Id,Name,Lat\n", None, ["latitude column but no longitude"]),
        (b"Id,Name,Zip,Postal Code\n", None, ["'Zip' and 'Postal Code' would both fill postal_code"]),
        (b"Id,Name,name\n", None, ["same name"]),
        (b"Id,Name\n", "Colour=industry", ["'Colour' that is not in the file"]),
        (b"Id,Name,Colour\n", "Colour=hue", ["not a account field"]),
    ],
)
def test_column_problems_are_found_before_any_row(header, mapping, fragments):
    table = read_csv_bytes(header + b"1,2,3,4\n")
    with pytest.raises(ApplicationError) as info:
        map_table(table, ACCOUNT_COLUMNS, parse_mapping(mapping) if mapping else None)
    for fragment in fragments:
        assert fragment in info.value.message


def test_mapping_syntax_errors():
    with pytest.raises(ApplicationError, match="Column name=field"):
        parse_mapping("just-a-column")


def test_extra_cells_beyond_the_header_are_a_row_error():
    table = read_csv_bytes(b"id,name\nA1,Smith, John\nA2,Ok\nA3,Trailing,,\n")
    mapped = map_table(table, ACCOUNT_COLUMNS)
    assert list(mapped.input_errors) == [0]
    assert "values in 3 columns but the header names 2" in mapped.input_errors[0]["non_field_errors"][0]


# --- import_accounts ------------------------------------------------------------------------------


def test_import_sample_csv_then_again_is_unchanged(zips):
    out = run("import_accounts", FIXTURES / "accounts.csv")
    assert "Done: created 4, updated 0, unchanged 0, errors 0." in out
    assert "Billing Zip/Postal Code → postal_code" in out

    harbor = Account.objects.get(external_id="ACC-001")
    assert (harbor.postal_code, harbor.geocode_quality, harbor.employees) == ("02134", "postal", 1200)
    assert harbor.revenue == Decimal("4500000.00") and harbor.segment == "enterprise"
    assert harbor.attributes == {"Customer Tier": "Gold"}
    west = Account.objects.get(external_id="ACC-002")
    assert west.geocode_quality == "exact" and west.parent == harbor and west.state == "CA"
    cafe = Account.objects.get(external_id="ACC-003")
    assert (cafe.name, cafe.postal_code, cafe.geocode_quality) == ("Café Lumière", "10001", "postal")
    northwind = Account.objects.get(external_id="ACC-004")
    assert (northwind.location, northwind.geocode_quality, northwind.country) == (None, "none", "US")

    again = run("import_accounts", FIXTURES / "accounts.csv")
    assert "Done: created 0, updated 0, unchanged 4, errors 0." in again


def test_import_xlsx_with_numeric_zip_and_ids(tmp_path, zips):
    path = xlsx(
        tmp_path,
        [
            ["Account ID", "Name", "Zip", "Employees", "Latitude", "Longitude", "Signed"],
            [1001, "Leading Zero Inc", 2134, 15, None, None, None],
            [1002, "Exact Co", 94105, 7.0, 37.5, -122.25, None],
        ],
    )
    out = run("import_accounts", path)
    assert "created 2" in out and "Excel sheet 'Accounts'" in out
    zero = Account.objects.get(external_id="1001")
    assert (zero.postal_code, zero.geocode_quality) == ("02134", "postal")
    exact = Account.objects.get(external_id="1002")
    assert (exact.location.x, exact.location.y, exact.employees) == (-122.25, 37.5, 7)


def test_import_xlsx_sheet_option_and_dates_in_custom_fields(tmp_path, db):
    import datetime as dt

    path = xlsx(
        tmp_path,
        [["nothing here"]],
        extra=("CRM", [["id", "name", "Signed"], ["A1", "X", dt.datetime(2024, 3, 1, 9, 30)]]),
    )
    run("import_accounts", path, "--sheet", "CRM")
    assert Account.objects.get().attributes == {"Signed": "2024-03-01T09:30:00"}


def test_import_with_mapping_file_and_semicolons(zips):
    out = run(
        "import_accounts",
        FIXTURES / "accounts_custom_headers.csv",
        "--map-file",
        FIXTURES / "crm_mapping.txt",
    )
    assert "created 2" in out and "semicolon" in out
    fjord = Account.objects.get(external_id="X-1")
    assert (fjord.name, fjord.revenue, fjord.attributes) == (
        "Fjord Analytics",
        Decimal("1250.00"),
        {"tier": "Gold"},
    )
    assert fjord.geocode_quality == "postal"


def test_inline_map_option(tmp_path, db):
    path = write(tmp_path, "a.csv", "Acct #,Firm\nA1,Acme\n")
    run("import_accounts", path, "--map", "Acct #=external_id", "--map", "Firm=name")
    assert Account.objects.get().name == "Acme"


def test_cp1252_file_reads_accented_names(tmp_path, db):
    path = write(tmp_path, "a.csv", "id,name,city\nA1,Café Zoë,Montréal\nA2,Müller GmbH,Köln\n", "cp1252")
    out = run("import_accounts", path)
    assert "Windows-1252" in out
    assert set(Account.objects.values_list("name", "city")) == {
        ("Café Zoë", "Montréal"),
        ("Müller GmbH", "Köln"),
    }


def test_binary_file_is_a_clear_error(tmp_path, db):
    path = tmp_path / "accounts.csv"
    path.write_bytes(os.urandom(2048) + b"\x00")
    message, _ = fails("import_accounts", path)
    assert "binary" in message
    assert not Account.objects.exists()


@pytest.mark.parametrize(
    "text, fragment", [("", "empty"), ("external_id,name\n", "no data rows"), ("\n\n", "empty")]
)
def test_empty_and_header_only_files(tmp_path, db, text, fragment):
    message, _ = fails("import_accounts", write(tmp_path, "a.csv", text))
    assert fragment in message


def test_missing_columns_fail_before_any_row(tmp_path, db):
    message, out = fails("import_accounts", write(tmp_path, "a.csv", "Company,Zip\nAcme,02134\n"))
    assert "Missing required columns: external_id" in message
    assert out == "" and not Account.objects.exists()


def test_bad_coordinates_fail_the_whole_file_and_are_reported(tmp_path, db):
    path = write(
        tmp_path,
        "a.csv",
        "id,name,latitude,longitude\nA1,Good,40,-74\nA2,Swapped,-122.4,37.8\nA3,Half,40,\nA4,Word,north,10\n",
    )
    report = tmp_path / "report.csv"
    message, out = fails("import_accounts", path, "--report", report)
    assert "Nothing was written: 3 of 4 rows have errors" in message and "--partial" in message
    assert "row 3 (A2) latitude: Latitude must be between -90 and 90 (got -122.4)." in out
    assert "row 4 (A3) longitude: Give both latitude and longitude, or neither." in out
    assert not Account.objects.exists()
    with report.open(encoding="utf-8-sig") as handle:
        lines = list(csv.DictReader(handle))
    assert [(r["row"], r["field"], r["level"]) for r in lines] == [
        ("3", "latitude", "error"),
        ("4", "longitude", "error"),
        ("5", "latitude", "error"),
    ]


def test_partial_writes_good_rows(tmp_path, db):
    path = write(tmp_path, "a.csv", "id,name,revenue\nA1,Good,5\nA2,Bad,-5\nA1,Dup,6\n")
    out = run("import_accounts", path, "--partial")
    assert "Done: created 1, updated 0, unchanged 0, errors 2." in out
    assert "row 4 (A1) external_id: Duplicate of row 2" in out
    assert list(Account.objects.values_list("name", flat=True)) == ["Good"]


def test_partial_with_every_row_bad_still_fails(tmp_path, db):
    message, _ = fails(
        "import_accounts", write(tmp_path, "a.csv", "id,name,revenue\nA1,Bad,-5\n"), "--partial"
    )
    assert "Nothing was written" in message


def test_duplicate_ids_fail_the_atomic_import(tmp_path, db):
    message, out = fails("import_accounts", write(tmp_path, "a.csv", "id,name\nA1,One\nA2,Two\nA1,Again\n"))
    assert "1 of 3 rows" in message
    assert "row 4 (A1) external_id: Duplicate of row 2" in out
    assert not Account.objects.exists()


def test_dry_run_writes_nothing(tmp_path, db):
    out = run("import_accounts", write(tmp_path, "a.csv", "id,name\nA1,One\n"), "--dry-run")
    assert "Dry run, nothing written; it would have: created 1" in out
    assert not Account.objects.exists()


def test_parent_cycle_in_a_file(tmp_path, db):
    path = write(tmp_path, "a.csv", "id,name,parent id\nA,A,B\nB,B,A\nC,C,A\n")
    _, out = fails("import_accounts", path)
    assert "row 2 (A) parent_external_id: This link makes a loop: A → B → A." in out


def test_screen_shows_fifty_lines_and_the_report_has_all(tmp_path, db):
    rows = "".join(f"A{i},X,-{i + 1}\n" for i in range(80))
    path = write(tmp_path, "a.csv", "id,name,revenue\n" + rows)
    report = tmp_path / "r.csv"
    _, out = fails("import_accounts", path, "--report", report)
    assert out.count("revenue: Must be 0 or more") == 50
    assert "… and 30 more; see" in out
    assert len(report.read_text(encoding="utf-8-sig").splitlines()) == 81


def test_row_with_unquoted_delimiter_is_reported(tmp_path, db):
    _, out = fails("import_accounts", write(tmp_path, "a.csv", "id,name\nA1,Smith, John\n"))
    assert "row 2 (A1) non_field_errors" in out and "header names 2" in out


def test_load_rows_combines_reading_and_mapping(tmp_path):
    table, mapped = load_rows(write(tmp_path, "a.csv", "id,name\nA1,X\n"), "accounts")
    assert table.description == "CSV, utf-8, comma-separated" and mapped.rows == [
        {"external_id": "A1", "name": "X"}
    ]


# --- import_reps ----------------------------------------------------------------------------------


def test_import_sample_reps(zips):
    out = run("import_reps", FIXTURES / "reps.csv")
    assert "created 3" in out
    mei = Rep.objects.select_related("manager").get(external_id="R-102")
    assert mei.manager.external_id == "R-100"
    assert (mei.capacity_fte, mei.active, mei.specialties) == (Decimal("0.50"), False, ["Retail"])
    assert mei.home_location.x == pytest.approx(-71.1226)
    assert "unchanged 3" in run("import_reps", FIXTURES / "reps.csv")


def test_import_reps_errors(tmp_path, db):
    path = write(tmp_path, "r.csv", "id,name,capacity,manager id\nR1,Ann,3,\nR2,Bob,1,R9\n")
    message, out = fails("import_reps", path)
    assert "2 of 2 rows" in message
    assert "row 2 (R1) capacity_fte: Capacity is in FTE" in out
    assert "row 3 (R2) manager_external_id: No rep has the external id 'R9'" in out


def test_a_file_mixing_utf8_and_cp1252_keeps_both_parts():
    data = "id,name\n1,Café from UTF-8\n".encode() + "2,Zoë from Windows\n".encode("cp1252")
    text, used, notes = decode_text(data)
    assert "Café from UTF-8" in text and "Zoë from Windows" in text
    assert used == "utf-8+cp1252" and "UTF-8 mixed with Windows-1252" in notes[0]


def test_xlsx_reading_reports_progress(tmp_path):
    path = xlsx(tmp_path, [["id", "name"]] + [[f"A{i}", "X"] for i in range(2500)])
    calls = []
    read_table(path, progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert [c[1] for c in calls] == [1000, 2000, 2501] and {c[0] for c in calls} == {"read"}
    assert calls[-1][2] == 2501


def test_quiet_import_prints_nothing_when_all_is_well(tmp_path, db):
    out = StringIO()
    call_command("import_accounts", str(write(tmp_path, "a.csv", "id,name\nA1,X\n")), verbosity=0, stdout=out)
    assert out.getvalue() == "" and Account.objects.count() == 1


def test_unwritable_report_stops_before_anything_is_written(tmp_path, db):
    path = write(tmp_path, "a.csv", "id,name\nA1,X\n")
    message, _ = fails("import_accounts", path, "--report", tmp_path / "missing" / "r.csv")
    assert "Cannot write the report" in message
    assert not Account.objects.exists()

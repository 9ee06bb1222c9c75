"""The bulk upsert services behind imports and the accounts/bulk/ endpoint, on real PostGIS."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.gis.geos import Point
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase as HypothesisTestCase

from accounts.models import Account, PostalCode, Rep
from accounts.services import account_bulk_upsert, rep_bulk_upsert
from tests.factories import AccountFactory, RepFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def zips():
    """Three ZIP centroids; 02134 is a New England ZIP whose leading zero spreadsheets drop."""
    for code, lon, lat in (
        ("02134", -71.1226, 42.3539),
        ("94105", -122.3892, 37.7898),
        ("10001", -73.9967, 40.7506),
    ):
        PostalCode.objects.create(code=code, location=Point(lon, lat, srid=4326))


def statuses(result):
    return [r.status for r in result.rows]


def errors_of(result, row=1):
    return next(r.errors for r in result.rows if r.row == row)


# --- create, update, unchanged --------------------------------------------------------------------


def test_creates_from_csv_strings_and_reads_back_typed_values():
    result = account_bulk_upsert(
        rows=[
            {
                "external_id": " A-1 ",
                "name": "  Acme Corp ",
                "revenue": "$1,250,000.50",
                "potential": "2e6",
                "workload_hours": "12.345",
                "employees": "1,200",
                "segment": "Mid-Market",
                "status": "CUSTOMER",
                "state": "california",
                "country": "usa",
                "latitude": "37.7749",
                "longitude": "-122.4194",
            }
        ]
    )
    assert result.committed and statuses(result) == ["created"]
    acme = Account.objects.get(external_id="A-1")
    assert acme.name == "Acme Corp"
    assert acme.revenue == Decimal("1250000.50")
    assert acme.potential == Decimal("2000000.00")
    assert acme.workload_hours == Decimal("12.35")  # rounded half up to the column's 2 places
    assert acme.employees == 1200
    assert (acme.segment, acme.status, acme.state, acme.country) == ("mid_market", "customer", "CA", "US")
    assert (acme.location.x, acme.location.y) == pytest.approx((-122.4194, 37.7749))
    assert acme.geocode_quality == "exact"


def test_text_with_tabs_quotes_backslashes_and_accents_round_trips():
    name = 'Tab\there "quoted" back\\slash, newline\nÉlan – ü'
    account_bulk_upsert(rows=[{"external_id": "A1", "name": name, "attributes": {"Note": "ß\\n", "N": 3}}])
    stored = Account.objects.get()
    assert stored.name == name and stored.attributes == {"Note": "ß\\n", "N": 3}
    assert statuses(account_bulk_upsert(rows=[{"external_id": "A1", "name": name}])) == ["unchanged"]


def test_json_types_are_accepted_too():
    result = account_bulk_upsert(
        rows=[
            {
                "external_id": 1001,
                "name": "Typed",
                "revenue": 10.1,
                "employees": 5.0,
                "latitude": 40,
                "longitude": -74,
            }
        ]
    )
    assert statuses(result) == ["created"], result.as_dict()
    typed = Account.objects.get(external_id="1001")
    assert typed.revenue == Decimal("10.10") and typed.employees == 5


def test_same_batch_twice_is_all_unchanged(zips):
    rows = [
        {
            "external_id": "A1",
            "name": "One",
            "postal_code": "2134",
            "revenue": "10.5",
            "attributes": {"Tier": "Gold"},
        },
        {
            "external_id": "A2",
            "name": "Two",
            "latitude": "40.123456789",
            "longitude": "-74.1",
            "segment": "smb",
        },
        {"external_id": "A3", "name": "Three", "parent_external_id": "A1", "employees": "", "country": ""},
    ]
    first = account_bulk_upsert(rows=rows)
    assert statuses(first) == ["created"] * 3
    stamps = dict(Account.objects.values_list("external_id", "updated"))

    second = account_bulk_upsert(rows=rows)
    assert statuses(second) == ["unchanged"] * 3
    assert second.totals == {"created": 0, "updated": 0, "unchanged": 3, "error": 0}
    assert dict(Account.objects.values_list("external_id", "updated")) == stamps


def test_update_touches_only_given_fields_and_reports_updated():
    account_bulk_upsert(rows=[{"external_id": "A1", "name": "Old", "industry": "Retail", "revenue": "5"}])
    result = account_bulk_upsert(rows=[{"external_id": "A1", "revenue": "7"}])
    assert statuses(result) == ["updated"]
    acme = Account.objects.get(external_id="A1")
    assert (acme.name, acme.industry, acme.revenue) == ("Old", "Retail", Decimal("7.00"))


def test_empty_value_clears_a_field_to_its_default():
    account_bulk_upsert(
        rows=[{"external_id": "A1", "name": "X", "industry": "Retail", "employees": "9", "revenue": "5"}]
    )
    account_bulk_upsert(rows=[{"external_id": "A1", "industry": "", "employees": None, "revenue": ""}])
    acme = Account.objects.get(external_id="A1")
    assert (acme.industry, acme.employees, acme.revenue) == ("", None, Decimal("0"))


def test_attributes_merge_key_by_key_and_empty_removes_a_key():
    account_bulk_upsert(
        rows=[{"external_id": "A1", "name": "X", "attributes": {"Tier": "Gold", "Owner": "Kim"}}]
    )
    result = account_bulk_upsert(rows=[{"external_id": "A1", "attributes": {"Tier": "Gold", "Owner": ""}}])
    assert statuses(result) == ["updated"]
    assert Account.objects.get().attributes == {"Tier": "Gold"}
    again = account_bulk_upsert(rows=[{"external_id": "A1", "attributes": {"Tier": "Gold"}}])
    assert statuses(again) == ["unchanged"]


def test_stored_account_from_elsewhere_updates_and_compares_field_by_field():
    stored = AccountFactory(external_id="CRM-9", industry="Manufacturing", revenue=Decimal("1000"))
    same = account_bulk_upsert(
        rows=[{"external_id": "CRM-9", "industry": "Manufacturing", "revenue": "1,000.00"}]
    )
    assert statuses(same) == ["unchanged"]
    moved = account_bulk_upsert(rows=[{"external_id": "CRM-9", "latitude": "41", "longitude": "-87.5"}])
    assert statuses(moved) == ["updated"]
    stored.refresh_from_db()
    assert (stored.location.x, stored.location.y, stored.geocode_quality) == (-87.5, 41.0, "exact")
    assert stored.name.startswith("Account ") and stored.potential == Decimal("5000")  # untouched


def test_updated_timestamp_moves_on_update():
    account_bulk_upsert(rows=[{"external_id": "A1", "name": "X"}])
    before = Account.objects.get().updated
    account_bulk_upsert(rows=[{"external_id": "A1", "name": "Y"}])
    assert Account.objects.get().updated > before


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("revenue", "-1", "0 or more"),
        ("revenue", "abc", "not a number"),
        ("revenue", "NaN", "finite"),
        ("revenue", "1e20", "less than"),
        ("potential", True, "not true/false"),
        ("employees", "12.5", "whole number"),
        ("employees", "-3", "0 or more"),
        ("segment", "gigantic", "smb, mid_market, enterprise"),
        ("status", "lost", "prospect"),
        ("state", "Ontario", "state code"),
        ("country", "Germany", "two-letter"),
        ("name", "x" * 256, "at most 255"),
        ("postal_code", "ABCDE", "not a US ZIP"),
        ("name", "", "required"),
    ],
)
def test_bad_values_are_reported_per_field(field, value, fragment):
    row = {"external_id": "A1", "name": "Acme", field: value}
    result = account_bulk_upsert(rows=[row])
    assert statuses(result) == ["error"]
    assert fragment in " ".join(errors_of(result)[field])
    assert not Account.objects.exists()


@pytest.mark.parametrize(
    "lat, lon, field, fragment",
    [
        ("91", "10", "latitude", "between -90 and 90"),
        ("45", "-181", "longitude", "between -180 and 180"),
        ("north", "10", "latitude", "not a number"),
        ("45", "", "longitude", "both latitude and longitude"),
        ("", "10", "latitude", "both latitude and longitude"),
    ],
)
def test_bad_coordinates(lat, lon, field, fragment):
    result = account_bulk_upsert(rows=[{"external_id": "A1", "name": "X", "latitude": lat, "longitude": lon}])
    assert fragment in " ".join(errors_of(result)[field])


def test_segment_and_status_accept_labels_in_any_case():
    result = account_bulk_upsert(
        rows=[
            {"external_id": "A1", "name": "X", "segment": "ENTERPRISE", "status": "Churned"},
            {"external_id": "A2", "name": "Y", "segment": "mid market", "status": "inactive"},
        ]
    )
    assert statuses(result) == ["created", "created"]
    assert list(Account.objects.order_by("external_id").values_list("segment", flat=True)) == [
        "enterprise",
        "mid_market",
    ]


def test_unknown_field_and_non_object_row_are_errors():
    result = account_bulk_upsert(rows=[{"external_id": "A1", "name": "X", "colour": "red"}, ["A2", "Y"]])
    assert "Unknown field" in errors_of(result, 1)["colour"][0]
    assert "object" in errors_of(result, 2)["non_field_errors"][0]


def test_name_is_required_to_create_but_not_to_update():
    result = account_bulk_upsert(rows=[{"external_id": "A1", "revenue": "3"}])
    assert "required to create" in errors_of(result)["name"][0]
    Account.objects.create(external_id="A1", name="Stored")
    assert statuses(account_bulk_upsert(rows=[{"external_id": "A1", "revenue": "3"}])) == ["updated"]


def test_duplicate_external_ids_error_on_later_rows_naming_the_first():
    result = account_bulk_upsert(
        rows=[
            {"external_id": "A1", "name": "First"},
            {"external_id": "A2", "name": "Other"},
            {"external_id": "A1", "name": "Again"},
            {"external_id": "A1 ", "name": "And again"},
        ],
        row_numbers=[2, 3, 4, 5],
        atomic=False,
    )
    assert statuses(result) == ["created", "created", "error", "error"]
    assert errors_of(result, 4)["external_id"] == [
        "Duplicate of row 2: each external id may appear once per batch."
    ]
    assert "row 2" in errors_of(result, 5)["external_id"][0]
    assert Account.objects.get(external_id="A1").name == "First"


def test_missing_external_id():
    result = account_bulk_upsert(rows=[{"name": "No id"}, {"external_id": "  ", "name": "Blank id"}])
    assert statuses(result) == ["error", "error"]
    assert errors_of(result, 1)["external_id"] == ["This field is required."]


def test_input_errors_from_the_caller_make_the_row_fail():
    result = account_bulk_upsert(
        rows=[{"external_id": "A1", "name": "X"}], input_errors={0: {"non_field_errors": ["Too many cells."]}}
    )
    assert statuses(result) == ["error"] and not result.committed


# --- atomic and partial ---------------------------------------------------------------------------


def test_atomic_batch_with_one_bad_row_writes_nothing():
    Account.objects.create(external_id="A0", name="Stored", industry="Retail")
    result = account_bulk_upsert(
        rows=[
            {"external_id": "A0", "industry": "Banking"},
            {"external_id": "A1", "name": "Good"},
            {"external_id": "A2", "name": "Bad", "revenue": "-5"},
        ]
    )
    assert not result.committed
    assert statuses(result) == ["updated", "created", "error"]  # what would have happened
    assert list(Account.objects.values_list("external_id", "industry")) == [("A0", "Retail")]


def test_partial_writes_the_good_rows_and_reports_the_bad():
    result = account_bulk_upsert(
        rows=[
            {"external_id": "A1", "name": "Good"},
            {"external_id": "A2", "name": "Bad", "latitude": "99", "longitude": "1"},
        ],
        atomic=False,
    )
    assert result.committed
    assert result.totals == {"created": 1, "updated": 0, "unchanged": 0, "error": 1}
    assert list(Account.objects.values_list("external_id", flat=True)) == ["A1"]


def test_dry_run_writes_nothing():
    result = account_bulk_upsert(rows=[{"external_id": "A1", "name": "X"}], dry_run=True)
    assert statuses(result) == ["created"] and not result.committed
    assert not Account.objects.exists()


# --- location -------------------------------------------------------------------------------------


def test_location_exact_then_postal_then_none(zips):
    account_bulk_upsert(
        rows=[
            {
                "external_id": "E",
                "name": "Exact",
                "latitude": "40.7",
                "longitude": "-74.0",
                "postal_code": "02134",
            },
            {"external_id": "P", "name": "Postal", "postal_code": "02134-1234"},
            {"external_id": "N", "name": "Unknown ZIP", "postal_code": "99999"},
            {
                "external_id": "Z",
                "name": "Null Island",
                "latitude": "0",
                "longitude": "0",
                "postal_code": "94105",
            },
        ]
    )
    got = {a.external_id: a for a in Account.objects.all()}
    assert got["E"].geocode_quality == "exact" and got["E"].location.y == pytest.approx(40.7)
    assert got["P"].geocode_quality == "postal" and got["P"].postal_code == "02134"
    assert (got["P"].location.x, got["P"].location.y) == pytest.approx((-71.1226, 42.3539))
    assert got["N"].geocode_quality == "none" and got["N"].location is None
    # 0,0 is a CRM's "unknown", so the ZIP centroid is used instead.
    assert got["Z"].geocode_quality == "postal" and got["Z"].location.x == pytest.approx(-122.3892)


def test_warning_for_unknown_zip_and_for_null_island(zips):
    result = account_bulk_upsert(
        rows=[
            {"external_id": "N", "name": "X", "postal_code": "99999"},
            {"external_id": "Z", "name": "Y", "latitude": "0", "longitude": "0"},
        ]
    )
    assert "99999" in result.rows[0].warnings["postal_code"][0]
    assert "0, 0" in result.rows[1].warnings["latitude"][0]


def test_numeric_postal_code_from_excel_gets_its_leading_zero(zips):
    account_bulk_upsert(rows=[{"external_id": "A1", "name": "X", "postal_code": 2134.0}])
    acme = Account.objects.get()
    assert (acme.postal_code, acme.geocode_quality) == ("02134", "postal")


def test_same_zip_keeps_stored_exact_location_but_new_zip_regeocodes(zips):
    account_bulk_upsert(
        rows=[
            {
                "external_id": "A1",
                "name": "X",
                "latitude": "42.1",
                "longitude": "-71.2",
                "postal_code": "02134",
            }
        ]
    )
    same = account_bulk_upsert(rows=[{"external_id": "A1", "postal_code": "02134"}])
    assert statuses(same) == ["unchanged"]
    assert Account.objects.get().geocode_quality == "exact"

    moved = account_bulk_upsert(rows=[{"external_id": "A1", "postal_code": "10001"}])
    assert statuses(moved) == ["updated"]
    acme = Account.objects.get()
    assert acme.geocode_quality == "postal" and acme.location.x == pytest.approx(-73.9967)


def test_location_within_tolerance_is_unchanged():
    account_bulk_upsert(
        rows=[{"external_id": "A1", "name": "X", "latitude": "40.1234567", "longitude": "-74.1"}]
    )
    near = account_bulk_upsert(rows=[{"external_id": "A1", "latitude": "40.12345674", "longitude": "-74.1"}])
    assert statuses(near) == ["unchanged"]
    far = account_bulk_upsert(rows=[{"external_id": "A1", "latitude": "40.1234570", "longitude": "-74.1"}])
    assert statuses(far) == ["updated"]


def test_foreign_postcode_is_kept_and_not_geocoded():
    result = account_bulk_upsert(
        rows=[{"external_id": "A1", "name": "X", "country": "CA", "postal_code": "K1A 0B1"}]
    )
    assert statuses(result) == ["created"], result.as_dict()
    acme = Account.objects.get()
    assert (acme.postal_code, acme.geocode_quality) == ("K1A 0B1", "none")


# --- parents --------------------------------------------------------------------------------------


def test_parent_linked_whatever_the_order_in_the_batch_and_to_stored_parents():
    Account.objects.create(external_id="HQ", name="Holding")
    result = account_bulk_upsert(
        rows=[
            {"external_id": "C1", "name": "Child", "parent_external_id": "P1"},
            {"external_id": "P1", "name": "Parent", "parent_external_id": "HQ"},
        ]
    )
    assert statuses(result) == ["created", "created"]
    child = Account.objects.select_related("parent__parent").get(external_id="C1")
    assert child.parent.external_id == "P1" and child.parent.parent.external_id == "HQ"

    again = account_bulk_upsert(rows=[{"external_id": "C1", "parent_external_id": "P1"}])
    assert statuses(again) == ["unchanged"]
    cleared = account_bulk_upsert(rows=[{"external_id": "C1", "parent_external_id": ""}])
    assert statuses(cleared) == ["updated"]
    assert Account.objects.get(external_id="C1").parent is None


def test_unknown_parent_and_own_parent_are_errors():
    result = account_bulk_upsert(
        rows=[
            {"external_id": "A1", "name": "X", "parent_external_id": "nope"},
            {"external_id": "A2", "name": "Y", "parent_external_id": "A2"},
        ],
        atomic=False,
    )
    assert "nope" in errors_of(result, 1)["parent_external_id"][0]
    assert "own parent" in errors_of(result, 2)["parent_external_id"][0]


def test_cycle_within_the_batch_is_refused():
    result = account_bulk_upsert(
        rows=[
            {"external_id": "A", "name": "A", "parent_external_id": "B"},
            {"external_id": "B", "name": "B", "parent_external_id": "C"},
            {"external_id": "C", "name": "C", "parent_external_id": "A"},
            {"external_id": "D", "name": "D", "parent_external_id": "A"},
        ],
        atomic=False,
    )
    # D hangs off the loop but is not in it; once the loop's rows fail, its parent A does not exist.
    assert statuses(result) == ["error"] * 4
    assert "loop" in errors_of(result, 1)["parent_external_id"][0]
    assert "has errors" in errors_of(result, 4)["parent_external_id"][0]
    assert not Account.objects.exists()


def test_cycle_through_stored_accounts_is_refused():
    top = Account.objects.create(external_id="TOP", name="Top")
    mid = Account.objects.create(external_id="MID", name="Mid", parent=top)
    Account.objects.create(external_id="LOW", name="Low", parent=mid)
    result = account_bulk_upsert(rows=[{"external_id": "TOP", "parent_external_id": "LOW"}])
    assert statuses(result) == ["error"]
    assert "TOP → LOW → MID → TOP" in errors_of(result)["parent_external_id"][0]
    assert Account.objects.get(external_id="TOP").parent is None


def test_failed_row_keeps_its_stored_link_which_can_close_a_loop():
    # Stored: A's parent is B. The batch moves B under A and also tries to move A away, but A's row is
    # bad, so A keeps B as parent and B → A would loop.
    b = Account.objects.create(external_id="B", name="B")
    Account.objects.create(external_id="A", name="A", parent=b)
    result = account_bulk_upsert(
        rows=[
            {"external_id": "A", "parent_external_id": "", "revenue": "-1"},
            {"external_id": "B", "parent_external_id": "A"},
        ],
        atomic=False,
    )
    assert statuses(result) == ["error", "error"]
    assert "loop" in errors_of(result, 2)["parent_external_id"][0]
    assert Account.objects.get(external_id="B").parent is None


# --- reps -----------------------------------------------------------------------------------------


def test_reps_with_manager_specialties_and_home_zip(zips):
    result = rep_bulk_upsert(
        rows=[
            {
                "external_id": "R1",
                "name": "Rita",
                "email": "rita@example.com",
                "home_postal_code": "2134",
                "capacity_fte": "0.5",
                "specialties": "Retail; Banking ;retail;",
                "manager_external_id": "M1",
                "active": "no",
            },
            {
                "external_id": "M1",
                "name": "Max",
                "home_latitude": "40.7",
                "home_longitude": "-74",
                "specialties": ["smb"],
            },
        ]
    )
    assert statuses(result) == ["created", "created"], result.as_dict()
    rita = Rep.objects.select_related("manager").get(external_id="R1")
    assert rita.manager.external_id == "M1"
    assert rita.specialties == ["Retail", "Banking", "retail"]
    assert (rita.capacity_fte, rita.active, rita.home_postal_code) == (Decimal("0.50"), False, "02134")
    assert rita.home_location.x == pytest.approx(-71.1226)
    assert rita.user is None

    again = rep_bulk_upsert(
        rows=[{"external_id": "R1", "specialties": "Retail;Banking;retail", "active": "false"}]
    )
    assert statuses(again) == ["unchanged"]


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("capacity_fte", "0", "more than 0"),
        ("capacity_fte", "2.5", "at most 2"),
        ("email", "not-an-email", "email address"),
        ("active", "maybe", "yes or no"),
        ("home_latitude", "100", "between -90 and 90"),
        ("user", "1", "Unknown field"),
    ],
)
def test_bad_rep_values(field, value, fragment):
    row = {"external_id": "R1", "name": "Rita", field: value}
    if field == "home_latitude":
        row["home_longitude"] = "10"
    result = rep_bulk_upsert(rows=[row])
    assert fragment in " ".join(errors_of(result)[field])
    assert not Rep.objects.exists()


def test_rep_home_location_is_kept_for_the_same_zip_and_foreign_postcodes_warn(zips):
    rep = RepFactory(external_id="R1", home_postal_code="02134")  # home at the factory's 0.5, 0.5
    same = rep_bulk_upsert(rows=[{"external_id": "R1", "home_postal_code": "2134"}])
    assert statuses(same) == ["unchanged"]
    rep.refresh_from_db()
    assert (rep.home_location.x, rep.home_location.y) == (0.5, 0.5)

    abroad = rep_bulk_upsert(rows=[{"external_id": "R1", "home_postal_code": "SW1A 1AA"}])
    assert statuses(abroad) == ["updated"]
    assert "not a US ZIP" in abroad.rows[0].warnings["home_postal_code"][0]
    rep.refresh_from_db()
    assert (rep.home_postal_code, rep.home_location) == ("SW1A 1AA", None)


def test_manager_cycle_is_refused():
    result = rep_bulk_upsert(
        rows=[
            {"external_id": "R1", "name": "One", "manager_external_id": "R2"},
            {"external_id": "R2", "name": "Two", "manager_external_id": "R1"},
        ]
    )
    assert statuses(result) == ["error", "error"]
    assert "loop" in errors_of(result, 1)["manager_external_id"][0]


# --- efficiency -----------------------------------------------------------------------------------


def test_query_count_does_not_grow_with_rows(django_assert_max_num_queries, zips):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    Account.objects.create(external_id="HQ", name="Holding")

    def batch(prefix, n):
        return [
            {
                "external_id": f"{prefix}{i}",
                "name": f"Acct {i}",
                "postal_code": "02134",
                "latitude": "" if i % 3 else "40.5",
                "longitude": "" if i % 3 else "-73.5",
                "parent_external_id": "HQ" if i % 2 else f"{prefix}1",
            }
            for i in range(n)
        ]

    counts = []
    for prefix, n in (("S", 20), ("L", 600)):
        with CaptureQueriesContext(connection) as queries:
            assert account_bulk_upsert(rows=batch(prefix, n)).totals["created"] == n
        counts.append(len(queries))
    # savepoint, lock and load, centroids, stored parents, reserve ids, stage, copy, insert, drop, release
    assert counts[0] == counts[1] <= 10

    rows = batch("L", 600)
    rows[3]["name"] = "Renamed"
    with django_assert_max_num_queries(10):
        result = account_bulk_upsert(rows=rows)
    assert result.totals == {"created": 0, "updated": 1, "unchanged": 599, "error": 0}


def test_progress_is_reported_per_stage():
    calls = []
    account_bulk_upsert(
        rows=[{"external_id": f"A{i}", "name": "X"} for i in range(1500)],
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    assert ("validate", 1000, 1500) in calls and ("validate", 1500, 1500) in calls
    assert calls[-1] == ("write", 1500, 1500)


# --- properties -----------------------------------------------------------------------------------


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(str.strip)
_money = st.decimals(min_value=0, max_value=Decimal("1e12"), places=2, allow_nan=False)
_row = st.fixed_dictionaries(
    {
        "name": _text,
        "revenue": st.one_of(_money, _money.map(str), _money.map(float)),
        "latitude": st.floats(-90, 90, allow_nan=False),
        "longitude": st.floats(-180, 180, allow_nan=False),
        "segment": st.sampled_from(["smb", "SMB", "Mid-market", "enterprise", ""]),
        "attributes": st.dictionaries(
            st.sampled_from(["Tier", "Region", "Owner"]), st.one_of(_text, st.integers())
        ),
    }
)


class TestUpsertProperties(HypothesisTestCase):
    """Whatever valid values come in, a second identical upsert changes nothing."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows=st.lists(_row, min_size=1, max_size=5))
    def test_upsert_twice_is_unchanged(self, rows):
        rows = [{**row, "external_id": uuid.uuid4().hex} for row in rows]
        first = account_bulk_upsert(rows=rows)
        assert first.error_count == 0, first.as_dict()
        second = account_bulk_upsert(rows=rows)
        assert [r.status for r in second.rows] == ["unchanged"] * len(rows), second.as_dict()

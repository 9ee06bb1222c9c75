"""The dashboard, account drill and warnings pages, and the CSV/XLSX exports."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone
from openpyxl import load_workbook

from analytics.models import WarningSign

pytestmark = pytest.mark.django_db

AS_OF = "2026-06-30"


def get(client, user, url):
    client.force_login(user)
    return client.get(url)


def test_pages_need_a_login(client):
    for url in ("/dashboard/", "/warnings/", "/dashboard/export/", "/dashboard/accounts/?territory=1"):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response.url


def test_manager_dashboard_shows_their_subtree_only(client, sales):
    html = get(client, sales.world.manager_west, f"/dashboard/?as_of={AS_OF}").content.decode()
    assert "West D1" in html and "East D1" not in html
    assert "FY2026 quotas" in html
    assert 'id="attainment-chart"' in html and "chart.umd.min.js" in html and "js/dashboard.js" in html
    assert "10,500" in html  # West booked year to date
    html = get(
        client, sales.world.manager_west, f"/dashboard/?as_of={AS_OF}&level=territory"
    ).content.decode()
    assert "W-T1" in html and "W-T2" in html and "E-T1" not in html
    response = get(client, sales.world.manager_west, f"/dashboard/?territory={sales.world.east.pk}")
    assert response.status_code == 404
    assert "No such territory" in response.content.decode()


def test_drill_down_region_district_territory_rep_accounts(client, sales):
    world = sales.world
    client.force_login(world.planner)
    html = client.get(f"/dashboard/?as_of={AS_OF}").content.decode()
    assert f"?as_of={AS_OF}&amp;territory={world.west.pk}" in html
    district = world.leaves["W-T1"].parent
    html = client.get(f"/dashboard/?as_of={AS_OF}&territory={world.west.pk}").content.decode()
    assert f"territory={district.pk}" in html
    leaf = world.leaves["W-T1"]
    html = client.get(f"/dashboard/?as_of={AS_OF}&territory={leaf.pk}").content.decode()
    rep = world.reps["W-T1"]
    assert "Rep W-T1" in html and f"accounts/?as_of={AS_OF}&amp;territory={leaf.pk}&amp;rep={rep.pk}" in html
    html = client.get(f"/dashboard/accounts/?as_of={AS_OF}&territory={leaf.pk}&rep={rep.pk}").content.decode()
    assert "W-T1 account 1" in html and "W-T1 account 2" in html and "4,500" in html


def test_bad_input_is_a_clear_page_not_a_500(client, sales):
    response = get(client, sales.world.planner, "/dashboard/?period=decade")
    assert response.status_code == 400 and "period" in response.content.decode()
    response = get(client, sales.world.planner, "/dashboard/export/?format=pdf")
    assert response.status_code == 400 and "format" in response.content.decode()


def test_csv_export_contains_the_rows_and_total(client, sales):
    response = get(client, sales.world.manager_west, f"/dashboard/export/?as_of={AS_OF}&level=territory")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_code = {r["Code"]: r for r in rows if r["Level"] != "total"}
    assert set(by_code) == {"W-T1", "W-T2"}
    assert float(by_code["W-T1"]["Booked"]) == 9000 and float(by_code["W-T1"]["Quota"]) == 12000
    assert by_code["W-T1"]["Path"] == "W > W-D1 > W-T1"
    total = next(r for r in rows if r["Level"] == "total")
    assert float(total["Booked"]) == 10500


def test_xlsx_export_has_rows_and_trend(client, sales):
    response = get(client, sales.world.planner, f"/dashboard/export/?as_of={AS_OF}&format=xlsx&level=rep")
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(response.content))
    sheet = book["Attainment"]
    values = list(sheet.values)
    assert values[0][:3] == ("Level", "Code", "Name")
    names = {row[2] for row in values[1:]}
    assert {"Rep E-T1", "Rep E-T2", "Rep W-T1", "Rep W-T2"} <= names
    trend = list(book["Trend"].values)
    assert trend[0][0] == "Month" and len(trend) == 13


def test_account_export(client, sales):
    leaf = sales.world.leaves["W-T2"]
    response = get(
        client, sales.world.manager_west, f"/dashboard/accounts/export/?as_of={AS_OF}&territory={leaf.pk}"
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {r["Account"] for r in rows} == {"W-T2 account 1", "W-T2 account 2"}
    assert sum(float(r["Booked"]) for r in rows) == 1500


def test_warnings_page_is_scoped_and_shows_the_action(client, sales):
    world = sales.world
    now = timezone.now()
    WarningSign.objects.create(
        kind="balance_drift", key="w1", plan=world.plan, territory=world.leaves["W-T1"], title="West drifted",
        suggestion="Rebalance West D1: a preview moves 25% of accounts (1 of 4).",
        action_url=f"/planner/{world.plan.pk}/?balance=1", first_seen=now, last_seen=now,
    )  # fmt: skip
    WarningSign.objects.create(
        kind="over_capacity", key="e1", plan=world.plan, territory=world.leaves["E-T1"],
        title="East overloaded", first_seen=now, last_seen=now,
    )  # fmt: skip
    html = get(client, world.manager_west, "/warnings/").content.decode()
    assert "West drifted" in html and "East overloaded" not in html
    assert "a preview moves 25% of accounts" in html
    assert 'id="check-now"' not in html  # managers do not run the checks
    html = get(client, world.planner, "/warnings/").content.decode()
    assert "West drifted" in html and "East overloaded" in html
    assert 'id="check-now"' in html and f'href="/planner/{world.plan.pk}/?balance=1"' in html


def test_dashboard_without_a_published_plan_says_so(client, world):
    html = get(client, world.planner, "/dashboard/").content.decode()
    assert "No published plan is in effect" in html

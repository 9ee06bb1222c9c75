"""`load_demo` on a small synthetic geography: five states (one to three per Census region) of 3x3
square counties, a Puerto Rico county the demo must leave alone, ZIP centroids and a tiny cities file."""

from __future__ import annotations

import csv
import gzip
import io
import re
from datetime import date
from decimal import Decimal

import numpy as np
import pytest
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.core.management import call_command
from django.db.models import Count, Max

from accounts.choices import AccountStatus, Role
from accounts.models import Account, PostalCode, Rep, User
from analytics import demo
from quotas.models import Booking, FiscalPeriod, QuotaPlan
from territories.choices import AssignmentRole, MemberRole, PlanStatus, UnitLevel
from territories.models import (
    AccountAssignment,
    Change,
    GeoUnit,
    Plan,
    Territory,
    TerritoryMembership,
    UnitAssignment,
)

TODAY = date(2026, 5, 15)
SIZE = 0.5  # degrees per square county

# state FIPS, abbreviation, south-west corner (lon, lat) of its 3x3 block of counties
STATES = [
    ("06", "CA", (-119.5, 34.0)),  # West / Pacific
    ("53", "WA", (-122.5, 46.5)),  # West / Northwest & Mountain
    ("36", "NY", (-75.5, 42.0)),  # Northeast
    ("17", "IL", (-89.5, 40.0)),  # Midwest
    ("48", "TX", (-97.5, 30.0)),  # South
]
PR = ("72", "PR", (-66.8, 18.0))

# name, state, lon, lat, population. Bayside sits on the block's western edge, so about half of
# its jittered points fall in the "sea" and must be drawn again.
CITIES = [
    ("Bayside", "CA", -119.5, 34.7, 900_000),
    ("Inland", "CA", -118.3, 35.2, 300_000),
    ("Hilltown", "CA", -118.9, 34.3, 40_000),
    ("Harbor", "WA", -121.8, 47.2, 500_000),
    ("Ridge", "WA", -121.3, 46.8, 60_000),
    ("Empire", "NY", -74.5, 42.6, 1_200_000),
    ("Lakeview", "NY", -75.2, 43.2, 90_000),
    ("Prairie", "IL", -88.6, 40.9, 700_000),
    ("Corn", "IL", -89.2, 40.3, 50_000),
    ("Lone Star", "TX", -96.6, 30.8, 800_000),
    ("Mesa", "TX", -97.2, 31.2, 120_000),
    ("San Demo", "PR", -66.4, 18.4, 400_000),
]
LOAD = dict(accounts=400, territories=10, seed=7, today=TODAY)


def _square(lon: float, lat: float, size: float) -> MultiPolygon:
    return MultiPolygon(
        Polygon(((lon, lat), (lon + size, lat), (lon + size, lat + size), (lon, lat + size), (lon, lat))),
        srid=4326,
    )


@pytest.fixture
def geography(db, tmp_path):
    """States, counties and ZIP centroids; returns the cities file path."""
    for fips, abbr, (lon0, lat0) in [*STATES, PR]:
        shape = _square(lon0, lat0, 3 * SIZE)
        state = GeoUnit.objects.create(
            level=UnitLevel.STATE, code=fips, name=abbr, geom=shape, geom_simplified=shape,
            centroid=shape.centroid, attributes={"state_abbr": abbr},
        )  # fmt: skip
        for row in range(3):
            for col in range(3):
                cell = _square(lon0 + col * SIZE, lat0 + row * SIZE, SIZE)
                code = f"{fips}{row * 3 + col + 1:03d}"
                GeoUnit.objects.create(
                    level=UnitLevel.COUNTY, code=code, name=f"{abbr} county {code}", parent=state, geom=cell,
                    geom_simplified=cell, centroid=cell.centroid,
                    attributes={"state_fips": fips, "state_abbr": abbr},
                )  # fmt: skip
                # Two ZIPs per county, so the nearest one is a real choice.
                for k, (dx, dy) in enumerate([(0.15, 0.15), (0.35, 0.35)]):
                    PostalCode.objects.create(
                        code=f"{fips}{row}{col}{k}",
                        location=Point(lon0 + col * SIZE + dx, lat0 + row * SIZE + dy, srid=4326),
                        state=abbr,
                    )  # fmt: skip
    path = tmp_path / "cities.csv.gz"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "state", "lat", "lon", "population"])
    for name, state, lon, lat, pop in CITIES:
        writer.writerow([name, state, lat, lon, pop])
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(buffer.getvalue())
    return path


def _load(cities, **overrides):
    return demo.demo_load(cities_path=cities, **(LOAD | overrides))


def _accounts_snapshot():
    return [
        (
            a.external_id, a.name, round(a.location.x, 6), round(a.location.y, 6), a.city, a.state,
            a.postal_code, a.industry, a.segment, a.employees, a.revenue, a.potential, a.workload_hours,
            a.status, a.lead_source, a.parent.external_id if a.parent else None,
        )
        for a in Account.objects.filter(external_id__startswith="DEMO-A").select_related("parent")
        .order_by("external_id")
    ]  # fmt: skip


def _table_counts():
    models = [Account, Rep, Plan, Territory, TerritoryMembership, UnitAssignment, AccountAssignment, Booking,
              FiscalPeriod, User, Change]  # fmt: skip
    return {m.__name__: m.objects.count() for m in models}


def _last_updates():
    return {
        m.__name__: m.objects.aggregate(last=Max("updated"))["last"] for m in [Account, Rep, Plan, Territory]
    }


# ------------------------------------------------------------------------------------------------- pure parts


def test_state_table_covers_50_states_and_dc_in_four_census_regions():
    assert len(demo.STATES) == 51
    assert "72" not in demo.STATES
    regions = {demo.DISTRICTS[d][0] for _, d in demo.STATES.values()}
    assert regions == set(demo.REGIONS)
    assert {d for _, d in demo.STATES.values()} == set(demo.DISTRICTS)
    assert len(demo.DISTRICTS) == 10


def test_weighted_kmeans_separates_blobs_and_uses_every_label():
    rng = np.random.default_rng(0)
    xy = np.vstack([rng.normal(0, 1, (30, 2)), rng.normal(50, 1, (30, 2)), rng.normal((0, 50), 1, (30, 2))])
    labels = demo.weighted_kmeans(xy, np.ones(90), 3, np.random.default_rng(1))
    assert sorted(np.bincount(labels)) == [30, 30, 30]
    assert len({labels[0], labels[30], labels[60]}) == 3
    # More clusters than points: capped, every point its own cluster.
    assert sorted(demo.weighted_kmeans(xy[:4], np.ones(4), 9, np.random.default_rng(1))) == [0, 1, 2, 3]


def test_balance_clusters_evens_out_weight_of_lumpy_points():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (300, 2))
    w = rng.lognormal(0, 1, 300)
    w[xy[:, 0] < 30] *= 5  # a heavy west, as with coastal metros

    def spread(labels):
        loads = np.bincount(labels, w, 6)
        return loads.max() / loads.min()

    kmeans = demo.weighted_kmeans(xy, w, 6, np.random.default_rng(1))
    balanced = demo.balance_clusters(xy, w, kmeans)
    assert spread(kmeans) > 1.5
    assert spread(balanced) < 1.15
    assert set(balanced) == set(range(6))


def test_apportion_gives_each_district_a_seat_within_its_caps():
    seats = demo.apportion(40, np.array([50.0, 30.0, 0.0, 20.0]), np.array([100, 100, 100, 3]))
    assert seats.sum() == 40
    assert seats.min() >= 1
    assert seats[3] == 3
    assert seats[0] > seats[1]


def test_leaf_colors_are_distinct_hex():
    colors = demo.leaf_colors(60)
    assert len(set(colors)) == 60
    assert all(len(c) == 7 and c.startswith("#") for c in colors)


# ------------------------------------------------------------------------------------------------- the load


def test_load_builds_the_plan_hierarchy_with_a_rep_per_leaf(geography):
    summary = _load(geography)

    plan = Plan.objects.get(name="FY2026 Starter plan")
    assert summary.plan == plan and summary.plan_created
    assert plan.status == PlanStatus.ACTIVE
    assert plan.effective_from == date(2026, 1, 1)
    regions = list(Territory.objects.filter(plan=plan, parent=None))
    assert sorted(r.code for r in regions) == ["MW", "NE", "S", "W"]
    assert all(r.level_name == "region" for r in regions)
    districts = Territory.objects.filter(plan=plan, parent__parent=None, parent__isnull=False)
    assert sorted(d.code for d in districts) == ["MW-HL", "NE-NY", "S-TX", "W-MTN", "W-PAC"]
    leaves = Territory.objects.filter(plan=plan, parent__parent__parent=None, parent__parent__isnull=False)
    assert leaves.count() == 10
    assert set(leaves.values_list("level_name", flat=True)) == {"territory"}
    assert not Territory.objects.filter(plan=plan, parent__in=leaves).exists()
    assert len(set(leaves.values_list("color", flat=True))) == 10

    for leaf in leaves:
        members = list(leaf.memberships.all())
        assert len(members) == 1, leaf.code
        assert members[0].role == MemberRole.PRIMARY and members[0].share == 1
        assert members[0].rep.manager.title == "District Sales Manager"
    assert TerritoryMembership.objects.filter(territory__plan=plan).values("rep").distinct().count() == 10

    # Every county of the five states in exactly one leaf; Puerto Rico in none.
    counties = GeoUnit.objects.filter(level=UnitLevel.COUNTY)
    units = UnitAssignment.objects.filter(plan=plan)
    assert units.count() == 45
    assert set(units.values_list("territory__level_name", flat=True)) == {"territory"}
    assert not units.filter(unit__code__startswith="72").exists()
    assert set(units.values_list("unit_id", flat=True)) == set(
        counties.exclude(code__startswith="72").values_list("id", flat=True)
    )
    # Compactness: leaves do not straddle districts.
    for ua in units.select_related("unit", "territory__parent"):
        assert demo.STATES[ua.unit.code[:2]][1] == ua.territory.parent.code


def test_accounts_are_on_land_in_the_states_and_all_assigned(geography):
    _load(geography)
    accounts = Account.objects.filter(external_id__startswith="DEMO-A")
    assert accounts.count() == 400
    assert accounts.filter(external_id="DEMO-A000001").exists()
    assert not accounts.filter(state="PR").exists()
    assert set(accounts.values_list("state", flat=True)) <= {"CA", "WA", "NY", "IL", "TX"}
    zips = set(PostalCode.objects.values_list("code", flat=True))
    assert set(accounts.values_list("postal_code", flat=True)) <= zips

    for account in accounts:
        county = GeoUnit.objects.get(level=UnitLevel.COUNTY, geom__intersects=account.location)
        assert county.attributes["state_abbr"] == account.state
    # Bayside is on the edge: its accounts exist, all inland.
    assert accounts.filter(city="Bayside").count() > 20

    plan = Plan.objects.get(name="FY2026 Starter plan")
    assigned = AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY, account__in=accounts)
    assert assigned.count() == 400
    assert set(assigned.values_list("territory__level_name", flat=True)) == {"territory"}
    children = accounts.filter(parent__isnull=False)
    assert children.exists()
    # A child is elsewhere than its parent yet owned with it (the resolver's family step).
    for child in children.select_related("parent"):
        assert child.city != child.parent.city
        owner = assigned.get(account=child).territory_id
        assert owner == AccountAssignment.objects.get(plan=plan, account=child.parent).territory_id


def test_account_mix_is_plausible(geography):
    _load(geography, accounts=1500)
    accounts = Account.objects.filter(external_id__startswith="DEMO-A")
    segments = dict(accounts.values_list("segment").annotate(n=Count("id")))
    assert 0.63 < segments["smb"] / 1500 < 0.77
    assert 0.04 < segments["enterprise"] / 1500 < 0.12
    assert not accounts.filter(status=AccountStatus.PROSPECT, revenue__gt=0).exists()
    customers = accounts.filter(status=AccountStatus.CUSTOMER)
    assert customers.filter(revenue__gt=0).count() == customers.count()
    assert all(a.potential >= a.revenue for a in customers)
    hours = {
        s: float(
            np.median([float(h) for h in accounts.filter(segment=s).values_list("workload_hours", flat=True)])
        )
        for s in ("smb", "mid_market", "enterprise")
    }
    assert 0.7 < hours["smb"] < 1.3 and 3 < hours["mid_market"] < 5 and 11 < hours["enterprise"] < 19
    assert len(set(accounts.values_list("industry", flat=True))) == 10
    assert accounts.filter(lead_source="").count() == 0


def test_same_seed_same_accounts_other_seed_other_accounts(geography):
    _load(geography)
    first = _accounts_snapshot()
    first_plan = sorted(
        UnitAssignment.objects.filter(plan__name="FY2026 Starter plan").values_list(
            "unit__code", "territory__code"
        )
    )
    _load(geography, reset=True)
    assert _accounts_snapshot() == first
    assert (
        sorted(
            UnitAssignment.objects.filter(plan__name="FY2026 Starter plan").values_list(
                "unit__code", "territory__code"
            )
        )
        == first_plan
    )
    _load(geography, reset=True, seed=8)
    assert _accounts_snapshot() != first


def test_second_run_changes_nothing(geography):
    _load(geography)
    counts, updates = _table_counts(), _last_updates()
    bookings = sorted(
        Booking.objects.values_list("external_id", "amount", "booked_on", "component", "rep_id")
    )

    again = _load(geography)

    assert again.accounts_created == 0 and again.bookings_created == 0 and not again.plan_created
    assert again.fiscal_periods_created == 0
    assert _table_counts() == counts
    assert _last_updates() == updates
    assert (
        sorted(Booking.objects.values_list("external_id", "amount", "booked_on", "component", "rep_id"))
        == bookings
    )
    assert Plan.objects.filter(name__endswith="Starter plan").count() == 1


def test_reset_rebuilds_and_leaves_other_rows_alone(geography):
    _load(geography)
    mine = Account.objects.create(external_id="CRM-1", name="Real customer", location=Point(-97.0, 30.5))
    counts = _table_counts()
    summary = _load(geography, reset=True)
    assert summary.reset["accounts"] == 400 and summary.reset["plans"] == 1
    assert Account.objects.filter(pk=mine.pk).exists()
    after = _table_counts()
    assert after["Account"] == counts["Account"]
    assert after["Plan"] == 1 and after["Territory"] == counts["Territory"]
    assert after["Booking"] == counts["Booking"]


def test_reset_refuses_while_a_quota_plan_uses_the_starter_plan(geography):
    _load(geography)
    plan = Plan.objects.get(name="FY2026 Starter plan")
    year = FiscalPeriod.objects.get(name="FY2026")
    QuotaPlan.objects.create(name="FY2026 quotas", territory_plan=plan, fiscal_year=year)
    with pytest.raises(demo.ApplicationError, match="Quota plans"):
        _load(geography, reset=True)
    assert Plan.objects.filter(pk=plan.pk).exists()
    assert Account.objects.filter(external_id__startswith="DEMO-A").count() == 400


def test_logins_have_roles_and_scope_links(geography):
    summary = _load(geography)
    plan = Plan.objects.get(name="FY2026 Starter plan")
    planner = User.objects.get(username="planner")
    assert planner.role == Role.PLANNER and planner.check_password(demo.DEMO_PASSWORD)
    assert plan.owner == planner
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.role == Role.ADMIN

    west = User.objects.get(username="manager.west")
    assert west.role == Role.MANAGER and west.check_password(demo.DEMO_PASSWORD)
    assert Territory.objects.get(plan=plan, code="W").manager == west
    pacific = User.objects.get(username="manager.pacific")
    assert Territory.objects.get(plan=plan, code="W-PAC").manager == pacific
    assert pacific.rep.manager == west.rep
    for node in Territory.objects.filter(plan=plan, level_name__in=["region", "district"]):
        assert node.manager is not None and node.manager.role == Role.MANAGER, node.code
        assert node.manager.rep.title in ("Regional Vice President", "District Sales Manager")

    rep_user = User.objects.get(username="rep.demo")
    assert rep_user.role == Role.REP
    leaf = Territory.objects.get(
        plan=plan, memberships__rep=rep_user.rep, memberships__role=MemberRole.PRIMARY
    )
    assert leaf.parent.code == "W-PAC"
    assert rep_user.rep.manager == pacific.rep

    shown = {login.username: login for login in summary.logins}
    assert {"planner", "admin", "manager.west", "manager.pacific", "rep.demo"} <= set(shown)
    assert shown["planner"].password == demo.DEMO_PASSWORD


def test_existing_user_keeps_their_password(geography):
    User.objects.create_user(username="admin", password="my-own-secret", role=Role.ADMIN)
    summary = _load(geography)
    admin = User.objects.get(username="admin")
    assert admin.check_password("my-own-secret")
    assert admin.is_superuser
    assert next(x for x in summary.logins if x.username == "admin").password != demo.DEMO_PASSWORD


def test_fiscal_periods_and_bookings(geography):
    _load(geography)
    assert FiscalPeriod.objects.count() == 34
    q1 = FiscalPeriod.objects.get(name="FY2026-Q1")
    assert (q1.start, q1.end, q1.parent.name) == (date(2026, 1, 1), date(2026, 3, 31), "FY2026")
    assert FiscalPeriod.objects.get(name="FY2025-M02").end == date(2025, 2, 28)

    bookings = Booking.objects.filter(external_id__startswith="DEMO-B")
    assert bookings.count() > 300
    assert all(re.fullmatch(r"DEMO-B\d{7}", ext) for ext in bookings.values_list("external_id", flat=True))
    assert bookings.filter(booked_on__gt=TODAY).count() == 0
    assert bookings.filter(booked_on__lt=date(2025, 1, 1)).count() == 0
    assert bookings.filter(booked_on__year=2026).exists()
    assert set(bookings.values_list("component", flat=True)) == {"new", "renewal", "upsell"}
    assert not bookings.filter(account__status=AccountStatus.PROSPECT).exists()
    assert not bookings.filter(account__status=AccountStatus.CHURNED, booked_on__year=2026).exists()
    assert bookings.filter(amount__lt=Decimal("100")).count() == 0
    # Q4 is the heavy quarter.
    q4 = bookings.filter(booked_on__range=(date(2025, 10, 1), date(2025, 12, 31))).count()
    q1_count = bookings.filter(booked_on__range=(date(2025, 1, 1), date(2025, 3, 31))).count()
    assert q4 > 1.2 * q1_count
    # Credited to the rep owning the account's territory in the starter plan.
    plan = Plan.objects.get(name="FY2026 Starter plan")
    sample = bookings.select_related("account", "rep")[:25]
    for booking in sample:
        owner = AccountAssignment.objects.get(plan=plan, account=booking.account).territory
        assert owner.memberships.get(role=MemberRole.PRIMARY).rep == booking.rep


def test_a_later_day_adds_only_the_new_bookings(geography):
    _load(geography)
    before = set(Booking.objects.values_list("external_id", flat=True))
    summary = _load(geography, today=date(2026, 9, 30))
    after = set(Booking.objects.values_list("external_id", flat=True))
    assert before < after
    assert summary.bookings_created == len(after - before)
    assert not Booking.objects.filter(external_id__in=after - before, booked_on__lte=TODAY).exists()


def test_starter_plan_stays_draft_beside_another_active_plan(geography):
    Plan.objects.create(name="Real plan", status=PlanStatus.ACTIVE, effective_from=date(2025, 7, 1))
    summary = _load(geography)
    assert summary.plan.status == PlanStatus.DRAFT
    assert any("draft" in note for note in summary.notes)


def test_missing_geography_is_a_clear_error(db, tmp_path):
    with pytest.raises(demo.ApplicationError, match="load_geography"):
        demo.demo_load(accounts=10, cities_path=tmp_path / "none.csv.gz", today=TODAY)


def test_command_prints_summary_and_logins(geography):
    out = io.StringIO()
    call_command(
        "load_demo", "--accounts", "200", "--territories", "6", "--seed", "3", "--cities", str(geography),
        verbosity=0, stdout=out,
    )  # fmt: skip
    text = out.getvalue()
    assert "Accounts: 200 created" in text
    assert "manager.west" in text and demo.DEMO_PASSWORD in text
    assert Account.objects.filter(external_id__startswith="DEMO-A").count() == 200


def test_demo_quota_plan_and_a_populated_manager_dashboard(geography):
    from analytics import selectors
    from quotas.models import ActivityGoal, Quota

    summary = _load(geography)
    quota_plan = QuotaPlan.objects.get(name="FY2026 demo quotas")
    assert summary.quota_plan == quota_plan and quota_plan.status == "active"
    leaves = Territory.objects.filter(plan=quota_plan.territory_plan, children__isnull=True)
    assert Quota.objects.filter(quota_plan=quota_plan, territory__in=leaves, period__kind="month").exists()
    assert ActivityGoal.objects.filter(quota_plan=quota_plan).count() == 3 * leaves.count()

    window = selectors.period_window(period="ytd", as_of=TODAY)
    west = User.objects.get(username="manager.west")
    report = selectors.attainment_report(user=west, window=window)
    assert report["parent"]["code"] == "W" and report["quota_plan"]["id"] == quota_plan.pk
    assert {r["code"] for r in report["rows"]} == {"W-MTN", "W-PAC"}
    totals = report["totals"]
    assert totals["booked"] > 0 and totals["quota"] > 0
    assert totals["attainment"] is not None and totals["pacing"] is not None
    # Every 2026 booking is credited: the plan was published after it was built.
    planner = selectors.attainment_report(user=User.objects.get(username="planner"), window=window)
    assert planner["uncredited"]["bookings"] == 0
    assert planner["totals"]["bookings"] == Booking.objects.filter(booked_on__year=2026).count()
    # A second run keeps the quota plan.
    assert _load(geography).quota_plan == quota_plan
    assert QuotaPlan.objects.count() == 1

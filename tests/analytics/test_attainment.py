"""Attainment: crediting by ownership on the booking date, roll-up, quotas, pacing, scoping."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from analytics import selectors
from quotas.models import Quota
from territories.models import AccountAssignment
from territories.services import plan_clone
from tessera_common.errors import ApplicationError

from .conftest import AS_OF, book, publish

pytestmark = pytest.mark.django_db


def rows_by_code(report):
    return {r["code"] if r["kind"] == "territory" else r["name"]: r for r in report["rows"]}


def test_planner_sees_regions_with_rolled_up_bookings_quota_and_pacing(sales):
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    report = selectors.attainment_report(user=sales.world.planner, window=window)
    rows = rows_by_code(report)
    assert set(rows) == {"E", "W"}
    assert rows["W"]["booked"] == 10500 and rows["E"]["booked"] == 12000
    assert rows["W"]["quota"] == 24000  # two leaves × 12 × 1,000
    assert rows["W"]["attainment"] == pytest.approx(10500 / 24000)
    # 30 June: six full months of 1,000 for each of two leaves are expected.
    assert rows["W"]["expected"] == pytest.approx(12000)
    assert rows["W"]["pacing"] == pytest.approx(10500 / 12000)
    assert report["totals"]["booked"] == 22500
    assert report["uncredited"] == {"amount": 0.0, "bookings": 0}
    assert report["period"]["start"] == "2026-01-01" and report["period"]["as_of"] == "2026-06-30"


def test_quarter_and_month_windows_cut_bookings_and_quota(sales):
    q2 = selectors.period_window(period="quarter", as_of=dt.date(2026, 5, 31))
    report = selectors.attainment_report(user=sales.world.planner, window=q2, level="territory")
    rows = rows_by_code(report)
    assert rows["W-T1"]["booked"] == 4500  # only the May booking
    assert rows["W-T1"]["quota"] == 3000
    # Through 31 May: April and May in full.
    assert rows["W-T1"]["expected"] == pytest.approx(2000)
    month = selectors.period_window(period="month", as_of=dt.date(2026, 2, 14))
    rows = rows_by_code(
        selectors.attainment_report(user=sales.world.planner, window=month, level="territory")
    )
    assert rows["W-T1"]["booked"] == 4500 and rows["W-T1"]["quota"] == 1000
    assert rows["W-T1"]["expected"] == pytest.approx(1000 * 14 / 28)


def test_pacing_follows_monthly_seasonality(sales):
    leaf = sales.world.leaves["E-T1"]
    # Back-load E-T1: nothing expected in the first half, everything in the second.
    Quota.objects.filter(
        quota_plan=sales.quota_plan, territory=leaf, period__start__lt=dt.date(2026, 7, 1)
    ).update(amount=0)
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    rows = rows_by_code(
        selectors.attainment_report(user=sales.world.planner, window=window, level="territory")
    )
    assert rows["E-T1"]["expected"] == 0
    assert rows["E-T1"]["pacing"] is None
    assert rows["E-T2"]["expected"] == pytest.approx(6000)


def test_manager_sees_only_their_subtree_and_starts_inside_it(sales):
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    report = selectors.attainment_report(user=sales.world.manager_west, window=window)
    assert report["parent"]["code"] == "W"
    assert [r["code"] for r in report["rows"]] == ["W-D1"]
    assert report["uncredited"] is None  # a planner's figure
    reps = selectors.attainment_report(user=sales.world.manager_west, window=window, level="rep")
    assert sorted(r["name"] for r in reps["rows"]) == ["Rep W-T1", "Rep W-T2"]
    with pytest.raises(ApplicationError) as exc:
        selectors.attainment_report(
            user=sales.world.manager_west, window=window, territory_id=sales.world.east.pk
        )
    assert exc.value.status == 404


def test_rep_sees_only_their_own_row(sales):
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    report = selectors.attainment_report(user=sales.world.rep_user, window=window, level="rep")
    assert [r["name"] for r in report["rows"]] == ["Rep E-T1"]
    assert report["rows"][0]["booked"] == 6000 and report["rows"][0]["quota"] == 12000


def test_outsider_sees_nothing(sales):
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    report = selectors.attainment_report(user=sales.world.outsider, window=window)
    assert report["rows"] == []


def test_drill_to_leaf_lists_reps_with_shares_and_accounts(sales):
    from tests.factories import RepFactory, add_member

    leaf = sales.world.leaves["W-T1"]
    overlay = RepFactory(name="Overlay West")
    add_member(leaf, overlay, role="overlay", share="0.5")
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    report = selectors.attainment_report(user=sales.world.manager_west, window=window, territory_id=leaf.pk)
    rows = rows_by_code(report)
    assert rows["Rep W-T1"]["booked"] == 9000
    assert rows["Overlay West"]["booked"] == 4500 and rows["Overlay West"]["quota"] is None
    accounts = selectors.attainment_accounts(
        user=sales.world.manager_west, window=window, territory_id=leaf.pk, rep_id=overlay.pk
    )
    assert accounts["total_accounts"] == 2 and accounts["booked"] == 4500
    assert {a["name"] for a in accounts["accounts"]} == {"W-T1 account 1", "W-T1 account 2"}


def test_booking_goes_to_the_owner_on_its_date_across_a_mid_period_publish(sales):
    """An account moves from W-T1 to W-T2 in a plan published on 1 April: its March booking stays
    with W-T1, its April one goes to W-T2."""
    world = sales.world
    moved = world.accounts["W-T1"][0]
    new_plan = plan_clone(plan=sales.plan, name="From April")
    publish(sales.plan, dt.date(2026, 1, 1), dt.date(2026, 4, 1))
    publish(new_plan, dt.date(2026, 4, 1))
    AccountAssignment.objects.filter(plan=new_plan, account=moved).update(
        territory=new_plan.territories.get(code="W-T2")
    )
    book(moved, 700, dt.date(2026, 3, 31))
    book(moved, 300, dt.date(2026, 4, 1))
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    report = selectors.attainment_report(user=world.planner, window=window, level="territory")
    rows = rows_by_code(report)
    # Shown in the plan in effect now; quotas (on the old plan's territories) matched by code.
    assert report["plan"]["id"] == new_plan.pk
    assert rows["W-T1"]["booked"] == 9000 + 700
    assert rows["W-T2"]["booked"] == 1500 + 300
    assert rows["W-T1"]["quota"] == 12000
    assert {p["id"] for p in report["crediting_plans"]} == {sales.plan.pk, new_plan.pk}
    # The same with the manager of West, whose region is a territory of both plans.
    new_plan.territories.filter(code="W").update(manager=world.manager_west)
    mine = rows_by_code(
        selectors.attainment_report(user=world.manager_west, window=window, level="territory")
    )
    assert set(mine) == {"W-T1", "W-T2"}
    assert mine["W-T1"]["booked"] == 9700 and mine["W-T2"]["booked"] == 1800


def test_bookings_before_any_plan_are_uncredited(sales):
    book(sales.world.accounts["E-T1"][0], 50, dt.date(2026, 1, 2))
    publish(sales.plan, dt.date(2026, 1, 5))
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    report = selectors.attainment_report(user=sales.world.planner, window=window)
    assert report["uncredited"] == {"amount": 50.0, "bookings": 1}


def test_trend_has_every_month_of_the_year_and_running_sums(sales):
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    trend = selectors.attainment_report(user=sales.world.planner, window=window)["trend"]
    assert len(trend["months"]) == 12 and trend["months"][0] == "2026-01"
    assert trend["booked"][1] == 11250 and trend["booked"][4] == 11250 and trend["booked"][6] is None
    assert trend["cumulative_booked"][5] == 22500
    assert trend["cumulative_quota"][-1] == 48000


def test_bad_parameters_name_the_field(sales):
    with pytest.raises(ApplicationError) as exc:
        selectors.period_window(period="fortnight")
    assert "period" in exc.value.errors
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    with pytest.raises(ApplicationError) as exc:
        selectors.attainment_report(user=sales.world.planner, window=window, level="galaxy")
    assert "level" in exc.value.errors
    with pytest.raises(ApplicationError) as exc:
        selectors.attainment_report(user=sales.world.planner, window=window, component="barter")
    assert "component" in exc.value.errors


def test_named_fiscal_period(sales):
    window = selectors.period_window(period="FY2026-Q1", as_of=AS_OF)
    assert (window.start, window.end, window.through) == (
        dt.date(2026, 1, 1),
        dt.date(2026, 3, 31),
        dt.date(2026, 3, 31),
    )
    rows = rows_by_code(
        selectors.attainment_report(user=sales.world.planner, window=window, level="territory")
    )
    assert rows["W-T1"]["booked"] == 4500 and rows["W-T1"]["quota"] == 3000
    assert rows["W-T1"]["expected"] == pytest.approx(3000)


def test_a_move_inside_the_active_plan_keeps_earlier_bookings_with_the_old_owner(sales):
    """Moves made in a plan after a booking are undone from the Change log: the booking stays with the
    territory that owned the account that day; later bookings go to the new owner."""
    from territories.services import account_assignments_move

    world = sales.world
    account = world.accounts["W-T1"][0]  # booked 4,500 on 10 February
    account_assignments_move(plan=sales.plan, account_ids=[account.pk], territory=world.leaves["W-T2"])
    # Booked after the move (the move is timestamped now; bookings dated later than today).
    from django.utils import timezone

    later = timezone.localdate() + dt.timedelta(days=1)
    book(account, 100, later)
    window = selectors.period_window(period="ytd", as_of=later)
    rows = rows_by_code(selectors.attainment_report(user=world.planner, window=window, level="territory"))
    assert rows["W-T1"]["booked"] == 9000
    assert rows["W-T2"]["booked"] == 1500 + 100
    accounts = selectors.attainment_accounts(
        user=world.planner, window=window, territory_id=world.leaves["W-T1"].pk
    )
    assert {a["name"]: a["booked"] for a in accounts["accounts"]}["W-T1 account 1"] == 4500


def test_an_account_moved_back_and_forth_is_credited_to_its_owner_on_each_booking_date(sales, monkeypatch):
    """Each booking goes to the territory the first later move came from (or today's owner)."""
    from django.utils import timezone

    from territories.services import account_assignments_move

    world = sales.world
    account = world.accounts["E-T1"][0]
    t1, t2 = world.leaves["E-T1"], world.leaves["E-T2"]
    for day, amount in ((dt.date(2026, 3, 5), 11), (dt.date(2026, 4, 5), 13), (dt.date(2026, 5, 5), 17)):
        book(account, amount, day)
    moves = ((dt.date(2026, 3, 20), t2), (dt.date(2026, 4, 20), t1), (dt.date(2026, 4, 25), t2))
    for day, territory in moves:
        at = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
        monkeypatch.setattr(timezone, "now", lambda at=at: at)
        account_assignments_move(plan=sales.plan, account_ids=[account.pk], territory=territory)
    monkeypatch.undo()
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    booked = {}
    for territory in (t1, t2):
        rows = selectors.attainment_accounts(user=world.planner, window=window, territory_id=territory.pk)
        booked[territory.code] = {a["name"]: a["booked"] for a in rows["accounts"]}.get(account.name)
    # 10 Feb (3,000) and 5 March in E-T1 (moved away on 20 March); 5 April in E-T2 (moved back on
    # 20 April, away again on 25 April); 5 May in E-T2, today's owner.
    assert booked == {"E-T1": 3000 + 11, "E-T2": 13 + 17}
    rows = rows_by_code(selectors.attainment_report(user=world.planner, window=window, level="territory"))
    assert rows["E-T1"]["booked"] == 6000 + 11 and rows["E-T2"]["booked"] == 6000 + 13 + 17


def test_credits_are_cached_until_a_write_touches_what_they_read(sales, monkeypatch):
    from analytics.models import ReadCache

    window = selectors.period_window(period="ytd", as_of=AS_OF)

    def west():
        rows = rows_by_code(
            selectors.attainment_report(user=sales.world.planner, window=window, level="territory")
        )
        return rows["W-T1"]["booked"], rows["W-T2"]["booked"]

    assert west() == (9000, 1500)
    cache = ReadCache.objects.get(key=f"credits:2026-01-01:{AS_OF.isoformat()}")
    assert cache.value and cache.seconds >= 0

    # Served from the cache: the crediting query does not run again.
    calls = []
    real = selectors._credit_rows
    monkeypatch.setattr(selectors, "_credit_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert west() == (9000, 1500) and calls == []

    # A new booking makes it stale.
    book(sales.world.accounts["W-T2"][0], 250, dt.date(2026, 6, 1))
    assert west() == (9000, 1750) and calls == [1]
    assert west() == (9000, 1750) and calls == [1]

    # A move made today gives the account its new owner from today on: a year that ended before
    # today keeps its answer (re-crediting after moves: test_the_credit_cache_re_credits_...).
    from territories.services import account_assignments_move

    account_assignments_move(
        plan=sales.plan,
        account_ids=[sales.world.accounts["W-T2"][0].pk],
        territory=sales.world.leaves["W-T1"],
    )
    assert west() == (9000, 1750) and calls == [1]
    # A write that names nothing it touched makes every answer stale.
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO analytics_datachange DEFAULT VALUES")
    assert west() == (9000, 1750) and calls == [1, 1]
    assert ReadCache.objects.filter(key__startswith="credits:").count() == 1


def test_the_credit_cache_re_credits_from_the_month_a_write_changed_and_agrees_with_a_fresh_count(
    sales, monkeypatch
):
    """Moves, undo, publications and bookings re-credit only the months from the first day whose
    owner or bookings they changed (analytics migration 0006); after each, the cached cells equal
    the whole year credited from scratch."""
    from django.utils import timezone

    from analytics.models import ReadCache
    from territories import history
    from territories.services import (
        account_assignments_move,
        plan_clone,
        plan_publish,
        plan_transition,
    )

    world = sales.world
    year_start = dt.date(2026, 1, 1)
    moved = world.accounts["W-T1"][0]  # booked 4,500 on 10 February
    book(moved, 700, dt.date(2026, 5, 20))
    clock = {"now": dt.datetime(2026, 5, 15, 12, tzinfo=dt.UTC)}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"])
    real = selectors._credit_rows
    runs: list[list[tuple]] = []

    def spy(crediting):
        runs.append([(d_from, d_to) for _plan, d_from, d_to, _ in crediting])
        return real(crediting)

    monkeypatch.setattr(selectors, "_credit_rows", spy)

    def cached():
        return sorted(selectors.credit_cells(year_start=year_start, through=AS_OF))

    def fresh():
        crediting = [(p, f, t, {}) for p, f, t in selectors._plans_over(year_start, AS_OF)]
        return sorted((p, t, m, c, round(float(a), 2), n) for p, t, m, c, a, n in real(crediting))

    def west():
        window = selectors.period_window(period="ytd", as_of=AS_OF)
        rows = rows_by_code(selectors.attainment_report(user=world.planner, window=window, level="territory"))
        return rows["W-T1"]["booked"], rows["W-T2"]["booked"]

    assert cached() == fresh() and runs == [[(year_start, AS_OF)]]
    assert west() == (9700, 1500)

    # Moved on 15 May: the 20 May booking goes with it, February's stays; May and June re-credited.
    account_assignments_move(
        plan=sales.plan, account_ids=[moved.pk], territory=world.leaves["W-T2"], actor=world.planner
    )
    assert cached() == fresh() and runs[-1] == [(dt.date(2026, 5, 1), AS_OF)]
    assert west() == (9000, 2200) and len(runs) == 2

    # Undone on 3 June: from 2 June (a day's margin for the time zone), so June only.
    clock["now"] = dt.datetime(2026, 6, 3, 9, tzinfo=dt.UTC)
    history.plan_undo(plan=sales.plan, actor=world.planner)
    assert cached() == fresh() and runs[-1] == [(dt.date(2026, 6, 1), AS_OF)]
    assert west() == (9000, 2200)

    # Locks, draft scenarios and their edits credit nobody: nothing is credited again.
    history.account_assignments_lock(
        plan=sales.plan, account_ids=[moved.pk], locked=True, actor=world.planner
    )
    draft = plan_clone(plan=sales.plan, name="Scenario", actor=world.planner)
    account_assignments_move(
        plan=draft, account_ids=[moved.pk], territory=draft.territories.get(code="W-T2"), actor=world.planner
    )
    assert cached() == fresh() and len(runs) == 3

    # Publishing the scenario from 1 June: June is credited again, under the new plan.
    plan_transition(plan=draft, status="in_review")
    plan_transition(plan=draft, status="approved")
    plan_publish(plan=draft, effective_from=dt.date(2026, 6, 1))
    assert cached() == fresh() and runs[-1] == [(dt.date(2026, 6, 1), AS_OF)]

    # A booking of March re-credits March alone.
    book(world.accounts["W-T2"][0], 50, dt.date(2026, 3, 3))
    assert cached() == fresh() and runs[-1] == [(dt.date(2026, 3, 1), dt.date(2026, 3, 31))]

    # An owner changed without a logged move (here by hand) counts from the plan's first day.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE territories_accountassignment SET territory_id = %s"
            " WHERE plan_id = %s AND account_id = %s AND role = 'primary'",
            [world.leaves["W-T1"].pk, sales.plan.pk, world.accounts["W-T2"][1].pk],
        )
    assert cached() == fresh() and runs[-1][0] == (year_start, dt.date(2026, 5, 31))
    assert ReadCache.objects.filter(key__startswith="credits:").count() == 1


def test_activity_and_retention_goals_sit_beside_quota(sales, client):
    from quotas.models import ActivityGoal

    leaf = sales.world.leaves["W-T1"]
    ActivityGoal.objects.create(
        quota_plan=sales.quota_plan, territory=leaf, metric="calls_per_week", target=40
    )
    ActivityGoal.objects.create(
        quota_plan=sales.quota_plan, territory=leaf, metric="retention_rate", target="0.9"
    )
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    rows = rows_by_code(
        selectors.attainment_report(user=sales.world.manager_west, window=window, level="territory")
    )
    assert {g["metric"]: g["target"] for g in rows["W-T1"]["goals"]} == {
        "calls_per_week": 40,
        "retention_rate": 0.9,
    }
    assert rows["W-T2"]["goals"] == []
    reps = rows_by_code(
        selectors.attainment_report(user=sales.world.manager_west, window=window, level="rep")
    )
    assert len(reps["Rep W-T1"]["goals"]) == 2
    client.force_login(sales.world.manager_west)
    html = client.get(f"/dashboard/?as_of={AS_OF}&level=territory").content.decode()
    assert "Calls per week 40" in html and "Retention rate 90%" in html


def test_the_worker_rewarms_the_credits_a_write_made_stale(sales, monkeypatch):
    from analytics.models import ReadCache
    from analytics.services import read_caches_warm

    took = read_caches_warm(today=AS_OF)
    key = f"credits:2026-01-01:{AS_OF.isoformat()}"
    assert set(took) == {key, f"balance:{sales.plan.pk}"}
    computed = ReadCache.objects.get(key=key).updated

    # Fresh: nothing is computed again.
    calls = []
    real = selectors._credit_rows
    monkeypatch.setattr(selectors, "_credit_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    read_caches_warm(today=AS_OF)
    assert calls == [] and ReadCache.objects.get(key=key).updated == computed

    # After a booking the warm run recomputes, and the dashboard then reads the new figure from it.
    book(sales.world.accounts["W-T2"][0], 250, dt.date(2026, 6, 1))
    read_caches_warm(today=AS_OF)
    assert calls == [1]
    window = selectors.period_window(period="ytd", as_of=AS_OF)
    rows = rows_by_code(
        selectors.attainment_report(user=sales.world.planner, window=window, level="territory")
    )
    assert rows["W-T2"]["booked"] == 1750 and calls == [1]


def test_bookings_moves_and_publishing_queue_one_rewarm(
    sales, monkeypatch, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    from analytics import tasks
    from quotas.services import booking_bulk_upsert
    from territories.services import account_assignments_move

    queued = []
    monkeypatch.setattr(tasks.warm_read_caches, "apply_async", lambda **kw: queued.append(kw))
    cache.delete(tasks.WARM_PENDING_KEY)
    account = sales.world.accounts["W-T2"][0]
    row = {"external_id": "RW-1", "account_external_id": account.external_id, "amount": "10",
           "booked_on": "2026-06-02", "component": "new"}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        booking_bulk_upsert(rows=[row])
    assert len(queued) == 1
    # A second write at once joins the pending run.
    with django_capture_on_commit_callbacks(execute=True):
        booking_bulk_upsert(rows=[{**row, "amount": "11"}])
    assert len(queued) == 1
    # Unchanged rows write nothing and queue nothing.
    cache.delete(tasks.WARM_PENDING_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        booking_bulk_upsert(rows=[{**row, "amount": "11"}])
    assert len(queued) == 1
    # A move in the active plan queues one too.
    with django_capture_on_commit_callbacks(execute=True):
        account_assignments_move(
            plan=sales.plan, account_ids=[account.pk], territory=sales.world.leaves["W-T1"]
        )
    assert len(queued) == 2
    # Bookings arrive in bursts (the run waits a few seconds); a move starts its run at once.
    assert [q["countdown"] for q in queued] == [3, 0]


def test_bookings_writes_recredit_only_their_months_and_match_a_full_computation(sales, monkeypatch):
    from analytics.models import ReadCache
    from quotas.models import Booking

    def cells():
        return sorted(selectors.credit_cells(year_start=dt.date(2026, 1, 1), through=AS_OF))

    def full():
        ReadCache.objects.all().delete()
        return cells()

    windows = []
    real = selectors._credit_rows
    monkeypatch.setattr(
        selectors,
        "_credit_rows",
        lambda crediting: windows.append([(f, t) for _, f, t, _ in crediting]) or real(crediting),
    )
    cells()
    windows.clear()

    # A June booking: only June is credited again.
    june = book(sales.world.accounts["W-T2"][0], 250, dt.date(2026, 6, 11))
    partial = cells()
    assert windows == [[(dt.date(2026, 6, 1), dt.date(2026, 6, 30))]]
    assert partial == full()

    # Moving a booking from June to March and deleting another: March through June, still exact.
    cells()
    windows.clear()
    Booking.objects.filter(pk=june.pk).update(booked_on=dt.date(2026, 3, 3), amount=300)
    Booking.objects.exclude(pk=june.pk).filter(booked_on__month=5).first().delete()
    partial = cells()
    assert windows == [[(dt.date(2026, 3, 1), dt.date(2026, 6, 30))]]
    assert partial == full()

    # A booking after the as-of date changes nothing it shows; the cache is fresh again.
    cells()
    windows.clear()
    book(sales.world.accounts["W-T2"][0], 75, dt.date(2026, 9, 1))
    assert cells() == full()
    assert windows == [[(dt.date(2026, 1, 1), AS_OF)]]  # only the full computation inside full()
    cells()
    windows.clear()

    # A statement that touches no booking records nothing, and locking every account changes no
    # owner; a write that names nothing it touched credits the whole year.
    Booking.objects.filter(pk=-1).delete()
    AccountAssignment.objects.filter(plan=sales.plan).update(locked=True)
    cells()
    assert windows == []
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO analytics_datachange DEFAULT VALUES")
    cells()
    assert windows == [[(dt.date(2026, 1, 1), AS_OF)]]


def test_scenario_edits_and_account_attributes_leave_the_credits_as_they_are(sales, monkeypatch):
    from analytics.models import ReadCache
    from territories.services import account_assignments_move

    def credits():
        return sorted(selectors.credit_cells(year_start=dt.date(2026, 1, 1), through=AS_OF))

    def balance(plan):
        return selectors.territory_balance(plan=plan, territory_ids=None)

    calls = {"credits": 0}
    real_credits = selectors._credit_rows

    def counting_credits(crediting):
        calls["credits"] += 1
        return real_credits(crediting)

    monkeypatch.setattr(selectors, "_credit_rows", counting_credits)
    before = credits()
    active_balance = balance(sales.plan)
    assert calls["credits"] == 1

    # A planner builds and edits a scenario: nobody's credits or the active plan's balance change.
    scenario = plan_clone(plan=sales.plan, name="Scenario B", actor=sales.world.planner)
    leaf_t2 = scenario.territories.get(code="W-T2")
    moved = AccountAssignment.objects.filter(plan=scenario, territory__code="W-T1").values_list(
        "account_id", flat=True
    )
    account_assignments_move(plan=scenario, account_ids=list(moved), territory=leaf_t2)
    assert credits() == before and calls["credits"] == 1
    seconds = ReadCache.objects.get(key=f"balance:{sales.plan.pk}").updated
    assert balance(sales.plan) == active_balance
    assert ReadCache.objects.get(key=f"balance:{sales.plan.pk}").updated == seconds
    # The scenario's own balance is its own.
    assert (
        balance(scenario)[leaf_t2.pk]["accounts"]
        == active_balance[sales.world.leaves["W-T1"].pk]["accounts"]
        + (active_balance[sales.world.leaves["W-T2"].pk]["accounts"])
    )

    # A CRM updates account attributes: credits stay, the balance (revenue) follows.
    account = sales.world.accounts["W-T1"][0]
    account.revenue = account.revenue + 1000
    account.save()
    assert credits() == before and calls["credits"] == 1
    assert balance(sales.plan)[sales.world.leaves["W-T1"].pk]["revenue"] == (
        active_balance[sales.world.leaves["W-T1"].pk]["revenue"] + 1000
    )

    # A change row that names nothing (an unknown write) counts for every read.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO analytics_datachange DEFAULT VALUES")
    credits()
    assert calls["credits"] == 2
    # A move in the published plan counts from its day on: today, after this year's as-of date.
    account_assignments_move(plan=sales.plan, account_ids=[account.pk], territory=sales.world.leaves["W-T2"])
    assert credits() == before and calls["credits"] == 2

"""Warning signs: each kind fires on a fixture made for it and stays quiet otherwise; findings are
stored one open warning per problem; the check runs as a job; publishing takes the drift baseline."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from analytics import services, tasks
from analytics.choices import CheckTrigger, SnapshotSource, WarningKind
from analytics.models import PlanBalanceSnapshot, WarningCheck, WarningSign
from territories.choices import JobStatus, PlanStatus
from territories.models import TerritoryMembership
from territories.services import account_assignments_move
from tests.factories import AccountFactory

from .conftest import AS_OF, book

pytestmark = pytest.mark.django_db


@pytest.fixture
def quiet(sales):
    """The sales fixture with both West leaves on the same pace and a snapshot at publish: nothing
    to warn about."""
    book(sales.world.accounts["W-T2"][0], 7500, dt.date(2026, 6, 1))
    services.plan_balance_snapshot_take(plan=sales.plan)
    return sales


def detect(sales, preview=False):
    findings, notes = services.warnings_detect(plan=sales.plan, today=AS_OF, preview=preview)
    return findings, notes


def kinds(findings):
    return sorted((f.kind, f.territory_id, f.rep_id) for f in findings)


def test_a_healthy_plan_has_no_warning_signs(quiet):
    findings, notes = detect(quiet)
    assert findings == []
    assert notes == []


def test_territory_without_a_rep(quiet):
    leaf = quiet.world.leaves["W-T2"]
    TerritoryMembership.objects.filter(territory=leaf).delete()
    findings, _ = detect(quiet)
    assert kinds(findings) == [(WarningKind.TERRITORY_WITHOUT_REP, leaf.pk, None)]
    assert findings[0].severity == "critical" and "2 accounts" in findings[0].detail


def test_unassigned_accounts(quiet):
    AccountFactory(name="Nobody's", state="TX")
    findings, _ = detect(quiet)
    assert kinds(findings) == [(WarningKind.UNASSIGNED_ACCOUNTS, None, None)]
    assert findings[0].figures["accounts"] == 1 and findings[0].figures["states"] == ["TX"]
    assert findings[0].action_url == f"/planner/{quiet.plan.pk}/"


def test_rep_over_capacity(quiet, settings):
    settings.TESSERA_HOURS_PER_FTE = 1600
    heavy = quiet.world.accounts["W-T1"][0]
    heavy.workload_hours = Decimal("1800")
    heavy.save()
    # Keep the snapshot in step so only capacity is at issue.
    PlanBalanceSnapshot.objects.all().delete()
    services.plan_balance_snapshot_take(plan=quiet.plan)
    findings, _ = detect(quiet)
    rep = quiet.world.reps["W-T1"]
    assert kinds(findings) == [(WarningKind.OVER_CAPACITY, quiet.world.leaves["W-T1"].pk, rep.pk)]
    assert findings[0].figures["utilisation"] == pytest.approx(1810 / 1600)
    district = quiet.world.leaves["W-T1"].parent
    assert findings[0].action_url == f"/planner/{quiet.plan.pk}/?balance={district.pk}"
    # Within the margin (10%): quiet.
    heavy.workload_hours = Decimal("1740")
    heavy.save()
    assert detect(quiet)[0] == []


def test_balance_drift_since_publish_with_a_real_preview(quiet):
    world = quiet.world
    moved = world.accounts["W-T1"][0]
    # Moved today in the active plan: its February booking stays with W-T1 (the Change log says
    # where it was then), so pace is untouched and only balance drifted.
    account_assignments_move(plan=quiet.plan, account_ids=[moved.pk], territory=world.leaves["W-T2"])
    findings, _ = detect(quiet, preview=True)
    assert kinds(findings) == [
        (WarningKind.BALANCE_DRIFT, world.leaves["W-T1"].pk, None),
        (WarningKind.BALANCE_DRIFT, world.leaves["W-T2"].pk, None),
    ]
    by_leaf = {f.territory_id: f for f in findings}
    assert by_leaf[world.leaves["W-T1"].pk].figures["drift"]["accounts"] == pytest.approx(-0.5)
    assert "since publish" in by_leaf[world.leaves["W-T1"].pk].title
    suggestion = findings[0].suggestion
    # The optimizer's own answer for the West district: moving one of its four accounts back.
    assert re.match(r"Rebalance West D1: a preview moves 25% of accounts \(1 of 4\)", suggestion), suggestion
    assert findings[0].action_url == f"/planner/{quiet.plan.pk}/?balance={world.leaves['W-T1'].parent_id}"


def test_drift_needs_a_baseline_and_takes_one(sales):
    findings, notes = detect(sales)
    assert WarningKind.BALANCE_DRIFT not in {f.kind for f in findings}
    assert PlanBalanceSnapshot.objects.get(plan=sales.plan).source == SnapshotSource.BASELINE
    assert any("took one now" in n for n in notes)


def test_attainment_gap_between_sibling_territories(sales):
    services.plan_balance_snapshot_take(plan=sales.plan)
    findings, _ = detect(sales)
    district = sales.world.leaves["W-T1"].parent
    assert kinds(findings) == [(WarningKind.ATTAINMENT_GAP, district.pk, None)]
    gap = findings[0]
    # W-T1 booked 9,000 and W-T2 1,500 against 6,000 expected each by 30 June.
    assert gap.figures["gap"] == pytest.approx(1.25)
    assert gap.severity == "critical"
    assert gap.action_url == f"/planner/{sales.plan.pk}/?balance={district.pk}"


def test_attainment_gap_is_skipped_without_quotas(quiet):
    quiet.quota_plan.delete()
    findings, notes = detect(quiet)
    assert findings == []
    assert any("No quota plan" in n for n in notes)


def test_recording_updates_open_warnings_and_resolves_gone_ones(sales):
    services.plan_balance_snapshot_take(plan=sales.plan)
    findings, _ = detect(sales)
    first = services.warnings_record(plan=sales.plan, findings=findings)
    assert first == {"opened": 1, "still_open": 0, "resolved": 0}
    again = services.warnings_record(plan=sales.plan, findings=findings)
    assert again == {"opened": 0, "still_open": 1, "resolved": 0}
    assert WarningSign.objects.count() == 1
    gone = services.warnings_record(plan=sales.plan, findings=[])
    assert gone["resolved"] == 1
    assert WarningSign.objects.get().resolved_at is not None


def test_check_task_runs_the_service_and_records_progress(sales):
    services.plan_balance_snapshot_take(plan=sales.plan)
    check = services.warning_check_create(actor=sales.world.planner, enqueue=False)
    result = tasks.check_warnings_run.apply(args=[check.pk]).get()
    check.refresh_from_db()
    assert result["status"] == JobStatus.SUCCEEDED == check.status
    assert check.progress == 100 and check.result["found"] >= 1
    assert WarningSign.objects.filter(last_check=check).exists()


def test_scheduled_task_creates_its_own_run(sales, monkeypatch):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "localdate", lambda *a, **k: AS_OF)
    result = tasks.check_warnings.apply().get()
    check = WarningCheck.objects.get(pk=result["check"])
    assert check.trigger == CheckTrigger.SCHEDULE and check.status == JobStatus.SUCCEEDED


def test_no_plan_in_effect_resolves_everything(sales):
    sales.plan.status = PlanStatus.DRAFT
    sales.plan.published_at = None
    sales.plan.save()
    check = services.warning_check_create(enqueue=False)
    check = services.warning_check_run(check=check, today=AS_OF)
    assert check.status == JobStatus.SUCCEEDED and check.result["plan"] is None


def test_publishing_takes_the_baseline_snapshot(world, django_capture_on_commit_callbacks, monkeypatch):
    from territories.services import plan_publish

    monkeypatch.setattr(
        tasks.snapshot_plan_balance,
        "delay",
        lambda plan_id: tasks.snapshot_plan_balance.apply(args=[plan_id]),
    )
    world.plan.status = PlanStatus.APPROVED
    world.plan.save()
    with django_capture_on_commit_callbacks(execute=True):
        plan_publish(plan=world.plan, effective_from=dt.date(2026, 1, 1))
    snapshot = PlanBalanceSnapshot.objects.get(plan=world.plan)
    assert snapshot.source == SnapshotSource.PUBLISH
    assert snapshot.figures["totals"]["accounts"] == 8
    assert snapshot.figures["territories"][str(world.leaves["E-T1"].pk)]["accounts"] == 2


def test_a_whole_district_over_capacity_asks_for_capacity_not_a_rebalance(quiet, settings):
    settings.TESSERA_HOURS_PER_FTE = 1600
    for code in ("W-T1", "W-T2"):
        for account in quiet.world.accounts[code]:
            account.workload_hours = Decimal("1000")
            account.save()
    findings, _ = detect(quiet, preview=True)
    over = [f for f in findings if f.kind == WarningKind.OVER_CAPACITY]
    assert {f.rep_id for f in over} == {quiet.world.reps["W-T1"].pk, quiet.world.reps["W-T2"].pk}
    for f in over:
        assert f.suggestion.startswith("Add capacity to West D1: its 2 reps carry 4,000 hours against 3,200")
        assert f.action_url == f"/planner/{quiet.plan.pk}/"

"""The quotas API: quota plans, allocation, scoped quotas, adjustments and approvals, relief,
goals, and bookings (list and bulk)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from unittest import mock

import pytest
from rest_framework.test import APIClient

from quotas.models import Booking, Quota, QuotaAdjustment, QuotaRelief
from territories.choices import PlanStatus

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def active_world(world):
    """Managers and reps see only plans past draft: make the world plan the active one."""
    world.plan.status = PlanStatus.ACTIVE
    world.plan.effective_from = dt.date(2026, 1, 1)
    world.plan.published_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    world.plan.save()
    return world


def test_create_allocate_and_read_quotas(active_world, fiscal_year):
    world = active_world
    planner = client_for(world.planner)
    response = planner.post(
        "/api/v1/quota-plans/",
        {"name": "FY26", "territory_plan": world.plan.pk, "fiscal_year": fiscal_year.pk,
         "targets": {"new": "1000000", "renewal": "500000", "upsell": "100000"}},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    plan_id = response.json()["id"]
    assert response.json()["targets"] == {"new": "1000000.00", "renewal": "500000.00", "upsell": "100000.00"}

    response = planner.post(
        f"/api/v1/quota-plans/{plan_id}/allocate/",
        {"method": "blend", "blend_weight": 0.7, "unit": "500", "min_ratio": 0.5, "max_ratio": 2},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["territories"] == 8 and response.json()["reps"] == 4

    response = planner.get(
        f"/api/v1/quota-plans/{plan_id}/quotas/",
        {"territory": world.west.pk, "period": fiscal_year.pk, "component": "new"},
    )
    assert response.status_code == 200
    assert [r["amount"] for r in response.json()["results"]] == ["500000.00"]

    manager = client_for(world.manager_west)
    rows = manager.get(f"/api/v1/quota-plans/{plan_id}/quotas/", {"kind": "year", "limit": 1000}).json()
    assert {r["territory"]["code"] for r in rows["results"]} == {"W", "W-D1", "W-T1", "W-T2"}
    rep_rows = (
        client_for(world.rep_user).get(f"/api/v1/quota-plans/{plan_id}/quotas/", {"kind": "year"}).json()
    )
    assert {
        (r["territory"]["code"], r["rep"]["name"] if r["rep"] else None) for r in rep_rows["results"]
    } == {
        ("E-T1", None),
        ("E-T1", "Rep E-T1"),
    }
    assert client_for(world.outsider).get(f"/api/v1/quota-plans/{plan_id}/").status_code == 404
    # Only planners allocate; bad parameters name the field.
    assert manager.post(f"/api/v1/quota-plans/{plan_id}/allocate/", {}, format="json").status_code == 403
    bad = planner.post(f"/api/v1/quota-plans/{plan_id}/allocate/", {"method": "dice"}, format="json")
    assert bad.status_code == 400 and "method" in bad.json()["errors"]
    bad = planner.get(f"/api/v1/quota-plans/{plan_id}/quotas/", {"component": "gold"})
    assert bad.status_code == 400 and "component" in bad.json()["errors"]


def test_adjust_and_approve_through_the_api(active_world, allocated, hierarchy_managers):
    world = active_world
    manager_district, _ = hierarchy_managers
    t1, t2 = world.leaves["W-T1"], world.leaves["W-T2"]
    body = {
        "quota_plan": allocated.pk, "component": "new", "period": allocated.fiscal_year.pk,
        "from_territory": t1.pk, "to_territory": t2.pk, "amount": "5000", "reason": "bigger pipeline",
    }  # fmt: skip
    response = client_for(manager_district).post("/api/v1/quota-adjustments/", body, format="json")
    assert response.status_code == 201, response.json()
    adjustment = response.json()
    assert adjustment["status"] == "pending" and adjustment["approver"]["username"] == "manager.west"

    # The planner cannot skip the region manager; the region manager sees it waiting.
    skip = client_for(world.planner).post(f"/api/v1/quota-adjustments/{adjustment['id']}/approve/", {})
    assert skip.status_code == 403
    waiting = client_for(world.manager_west).get("/api/v1/quota-adjustments/", {"awaiting_me": "true"}).json()
    assert [a["id"] for a in waiting["results"]] == [adjustment["id"]]
    response = client_for(world.manager_west).post(
        f"/api/v1/quota-adjustments/{adjustment['id']}/approve/", {"note": "fine"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "approved"
    year = allocated.fiscal_year
    assert Quota.objects.get(
        quota_plan=allocated, period=year, territory=t2, rep=None, component="new"
    ).amount == Decimal("305000.00")
    history = client_for(world.manager_west).get(f"/api/v1/quota-plans/{allocated.pk}/history/").json()
    moved = [
        h for h in history["results"] if h["adjustment"] == adjustment["id"] and h["period"]["kind"] == "year"
    ]
    assert {(h["territory_code"], h["old_amount"], h["new_amount"]) for h in moved if h["rep"] is None} == {
        ("W-T1", "300000.00", "295000.00"),
        ("W-T2", "300000.00", "305000.00"),
    }
    # East is outside manager.west's subtree.
    outside = {**body, "from_territory": world.leaves["E-T1"].pk, "to_territory": world.leaves["E-T2"].pk}
    assert (
        client_for(world.manager_west).post("/api/v1/quota-adjustments/", outside, format="json").status_code
        == 403
    )
    missing = client_for(world.manager_west).post(
        "/api/v1/quota-adjustments/", {**body, "from_territory": 999999}, format="json"
    )
    assert missing.status_code == 400 and "from_territory" in missing.json()["errors"]


def test_relief_report_and_the_event_listener(active_world, allocated, django_capture_on_commit_callbacks):
    from territories.services import account_assignments_move

    world = active_world
    account = world.accounts["W-T1"][0]
    with (
        mock.patch("quotas.tasks.compute_relief.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        result = account_assignments_move(
            plan=world.plan, account_ids=[account.pk], territory=world.leaves["E-T2"], actor=world.planner
        )
    delay.assert_called_once()
    quota_plan_id, event, payload = delay.call_args.args
    assert (
        quota_plan_id == allocated.pk
        and event == "assignment.changed"
        and payload["batch"] == result["batch"]
    )
    # Run the task body as the worker would.
    from quotas.tasks import compute_relief

    assert compute_relief.run(quota_plan_id, event, payload)["reliefs"] == 1
    report = client_for(world.planner).get(f"/api/v1/quota-plans/{allocated.pk}/relief/").json()
    assert report["company_total_unchanged"] is True
    line = report["lines"][0]
    assert (line["from_code"], line["to_code"], line["account_external_id"]) == (
        "W-T1",
        "E-T2",
        account.external_id,
    )
    assert QuotaRelief.objects.count() == 1
    east_report = client_for(world.manager_west).get(f"/api/v1/quota-plans/{allocated.pk}/relief/").json()
    assert len(east_report["lines"]) == 1  # it touched W-T1, which manager.west manages


def test_goals_api(active_world, allocated):
    world = active_world
    url = f"/api/v1/quota-plans/{allocated.pk}/goals/"
    leaf = world.leaves["W-T2"]
    response = client_for(world.manager_west).post(
        url, {"territory": leaf.pk, "metric": "meetings_per_week", "target": "12"}, format="json"
    )
    assert response.status_code == 200, response.json()
    bad = client_for(world.manager_west).post(
        url, {"territory": leaf.pk, "metric": "retention_rate", "target": "1.5"}, format="json"
    )
    assert bad.status_code == 400 and "target" in bad.json()["errors"]
    goals = client_for(world.planner).get(url).json()["results"]
    assert [(g["territory"]["code"], g["metric"], g["target"]) for g in goals] == [
        ("W-T2", "meetings_per_week", "12.000")
    ]


def test_bookings_bulk_json_and_csv(world):
    integration = client_for(world.integration)
    account = world.accounts["W-T1"][0]
    rows = [
        {"external_id": "B-1", "account_external_id": account.external_id, "amount": "1200.50",
         "booked_on": "2026-03-04", "component": "new"},
        {"external_id": "B-2", "account_external_id": "NOPE", "amount": "-3", "booked_on": "soon",
         "component": "gold"},
    ]  # fmt: skip
    response = integration.post("/api/v1/bookings/bulk/?atomic=true", rows, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["committed"] is False and body["totals"] == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "error": 1,
    }
    errors = body["rows"][1]["errors"]
    assert set(errors) == {"account_external_id", "amount", "booked_on", "component"}
    assert not Booking.objects.exists()

    response = integration.post("/api/v1/bookings/bulk/", rows, format="json")
    assert response.status_code == 200 and response.json()["committed"] is True
    assert Booking.objects.get().amount == Decimal("1200.50")
    again = integration.post("/api/v1/bookings/bulk/", rows[:1], format="json").json()
    assert again["totals"]["unchanged"] == 1 and again["rows"][0]["id"] == Booking.objects.get().pk

    csv_body = (
        "Booking ID,Account ID,Amount,Close Date,Type,Rep ID\n"
        f"B-1,{account.external_id},1300,2026-03-04,Renewal,{world.reps['W-T1'].external_id}\n"
        f'B-3,{account.external_id},"2,000",03/09/2026,upsell,\n'
    )
    response = integration.post("/api/v1/bookings/bulk/?atomic=true", csv_body, content_type="text/csv")
    assert response.status_code == 200, response.json()
    assert response.json()["totals"] == {"created": 1, "updated": 1, "unchanged": 0, "error": 0}
    b1 = Booking.objects.get(external_id="B-1")
    assert (b1.amount, b1.component, b1.rep) == (Decimal("1300.00"), "renewal", world.reps["W-T1"])
    assert Booking.objects.get(external_id="B-3").booked_on == dt.date(2026, 3, 9)

    assert (
        client_for(world.manager_west).post("/api/v1/bookings/bulk/", rows, format="json").status_code == 403
    )
    too_many = [{"external_id": f"X{i}"} for i in range(10_001)]
    assert integration.post("/api/v1/bookings/bulk/", too_many, format="json").status_code == 400


def test_bookings_list_is_scoped(active_world):
    world = active_world
    for code, accounts in world.accounts.items():
        Booking.objects.create(
            external_id=f"L-{code}",
            account=accounts[0],
            amount=10,
            booked_on=dt.date(2026, 2, 1),
            component="new",
        )
    everything = client_for(world.planner).get("/api/v1/bookings/").json()
    assert everything["count"] == 4
    west = client_for(world.manager_west).get("/api/v1/bookings/", {"booked_after": "2026-01-01"}).json()
    assert sorted(b["external_id"] for b in west["results"]) == ["L-W-T1", "L-W-T2"]
    assert client_for(world.outsider).get("/api/v1/bookings/").json()["count"] == 0


def test_pending_adjustments_block_reallocation(world, allocated):
    from quotas import services

    services.quota_adjustment_propose(
        quota_plan=allocated, actor=world.planner, component="new", period=allocated.fiscal_year,
        from_territory=world.east, to_territory=world.west, amount="1", reason="x",
    )  # fmt: skip
    response = client_for(world.planner).post(
        f"/api/v1/quota-plans/{allocated.pk}/allocate/", {}, format="json"
    )
    assert response.status_code == 400 and "adjustments" in response.json()["errors"]
    assert QuotaAdjustment.objects.count() == 1


def test_publishing_a_successor_relieves_quota_plans_on_the_superseded_plan(
    active_world, allocated, django_capture_on_commit_callbacks
):
    from territories.models import AccountAssignment
    from territories.services import plan_clone, plan_publish, plan_transition

    world = active_world
    successor = plan_clone(plan=world.plan, name="H2 plan", actor=world.planner)
    moved = world.accounts["E-T1"][1]
    AccountAssignment.objects.filter(plan=successor, account=moved).update(
        territory=successor.territories.get(code="E-T2")
    )
    for status in ("in_review", "approved"):
        successor = plan_transition(plan=successor, status=status, actor=world.planner)
    with (
        mock.patch("quotas.tasks.compute_relief.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        plan_publish(plan=successor, effective_from=dt.date(2026, 7, 1), actor=world.planner)
    delay.assert_called_once()
    quota_plan_id, event, payload = delay.call_args.args
    assert (quota_plan_id, event, payload["supersedes_plan_id"]) == (
        allocated.pk,
        "plan.published",
        world.plan.pk,
    )
    from quotas.tasks import compute_relief

    assert compute_relief.run(quota_plan_id, event, payload)["reliefs"] == 1
    line = QuotaRelief.objects.get()
    assert (line.from_code, line.to_code, line.effective_from) == ("E-T1", "E-T2", dt.date(2026, 7, 1))
    assert line.status == "applied" and line.total > 0
    # Retrying the task adds nothing.
    assert compute_relief.run(quota_plan_id, event, payload)["reliefs"] == 0


def test_a_large_plan_allocates_in_the_background(
    active_world, quota_plan, monkeypatch, django_capture_on_commit_callbacks
):
    from quotas import services
    from quotas.tasks import allocate_plan

    world = active_world
    monkeypatch.setattr(services, "ALLOCATE_IN_BACKGROUND_FROM", 5)  # the world plan has 8 territories
    planner = client_for(world.planner)
    url = f"/api/v1/quota-plans/{quota_plan.pk}/allocate/"
    with (
        mock.patch("quotas.tasks.allocate_plan.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = planner.post(url, {"method": "history", "unit": "10"}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["allocation_job"]["status"] == "queued"
    assert not Quota.objects.filter(quota_plan=quota_plan, territory__isnull=False).exists()
    again = planner.post(url, {}, format="json")
    assert again.status_code == 409
    quota_plan_id, actor_id, parameters = delay.call_args.args
    assert parameters["method"] == "history" and parameters["unit"] == "10.00"

    assert allocate_plan.run(quota_plan_id, actor_id, parameters)["status"] == "succeeded"
    job = planner.get(f"/api/v1/quota-plans/{quota_plan.pk}/").json()["allocation_job"]
    assert job["status"] == "succeeded" and job["result"]["territories"] == 8
    assert Quota.objects.get(
        quota_plan=quota_plan, period=quota_plan.fiscal_year, territory=world.west, rep=None, component="new"
    ).amount == Decimal("800000.00")

    # A run that the plan no longer allows is recorded as failed, with the reason.
    from quotas.services import quota_plan_transition

    quota_plan_transition(quota_plan=quota_plan, status="approved", actor=world.planner)
    quota_plan_transition(quota_plan=quota_plan, status="active", actor=world.planner)
    assert allocate_plan.run(quota_plan_id, actor_id, parameters)["status"] == "failed"
    job = planner.get(f"/api/v1/quota-plans/{quota_plan.pk}/").json()["allocation_job"]
    assert job["status"] == "failed" and "active" in job["error"]

"""The quota pages: the list, a plan's page for each persona, and the forms behind them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from quotas.models import ActivityGoal, Quota, QuotaAdjustment, QuotaPlan
from territories.choices import PlanStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def active(world):
    world.plan.status = PlanStatus.ACTIVE
    world.plan.effective_from = dt.date(2026, 1, 1)
    world.plan.published_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    world.plan.save()
    return world


def test_planner_creates_and_allocates_from_the_pages(client, active, fiscal_year):
    client.force_login(active.planner)
    page = client.get("/quotas/")
    assert page.status_code == 200 and b"New quota plan" in page.content
    response = client.post(
        "/quotas/new/",
        {"name": "FY26 plan", "territory_plan": active.plan.pk, "fiscal_year": fiscal_year.pk,
         "target_new": "800000", "target_renewal": "0", "target_upsell": "0"},
    )  # fmt: skip
    quota_plan = QuotaPlan.objects.get(name="FY26 plan")
    assert response.status_code == 302 and response.url == f"/quotas/{quota_plan.pk}/"
    response = client.post(
        f"/quotas/{quota_plan.pk}/allocate/",
        {"method": "potential", "unit": "1000", "blend_weight": "0.5", "target_new": "800000",
         "target_renewal": "100000", "target_upsell": "0"},
        follow=True,
    )  # fmt: skip
    assert b"Allocated by potential" in response.content
    assert Quota.objects.get(
        quota_plan=quota_plan, period=fiscal_year, territory=active.west, rep=None, component="new"
    ).amount == Decimal("400000.00")
    page = client.get(f"/quotas/{quota_plan.pk}/?component=renewal")
    assert page.status_code == 200
    assert b"W-T1 West 1" in page.content and b"Rep W-T1" in page.content
    bad = client.post(
        f"/quotas/{quota_plan.pk}/allocate/", {"method": "potential", "unit": "-1"}, follow=True
    )
    assert b"unit" in bad.content


def test_manager_sees_their_subtree_and_proposes(client, active, allocated):
    client.force_login(active.manager_west)
    page = client.get(f"/quotas/{allocated.pk}/")
    assert page.status_code == 200
    assert b"W-T1 West 1" in page.content and b"E-T1" not in page.content
    assert b"Propose an adjustment" in page.content
    t1, t2 = active.leaves["W-T1"], active.leaves["W-T2"]
    response = client.post(
        f"/quotas/{allocated.pk}/adjustments/",
        {"between": "territories", "component": "new", "period": allocated.fiscal_year.pk,
         "from_territory": t1.pk, "to_territory": t2.pk, "amount": "1000", "reason": ""},
        follow=True,
    )  # fmt: skip
    assert b"needs a reason" in response.content and not QuotaAdjustment.objects.exists()
    client.post(
        f"/quotas/{allocated.pk}/adjustments/",
        {"between": "territories", "component": "new", "period": allocated.fiscal_year.pk,
         "from_territory": t1.pk, "to_territory": t2.pk, "amount": "1000", "reason": "pipeline"},
    )  # fmt: skip
    adjustment = QuotaAdjustment.objects.get()
    # The region manager's proposal goes to a planner: not to themselves.
    page = client.post(
        f"/quotas/{allocated.pk}/adjustments/{adjustment.pk}/", {"decision": "approve"}, follow=True
    )
    assert b"next level up" in page.content
    client.force_login(active.planner)
    page = client.get(f"/quotas/{allocated.pk}/")
    assert b"Waiting for your approval" in page.content
    client.post(f"/quotas/{allocated.pk}/adjustments/{adjustment.pk}/", {"decision": "approve"})
    adjustment.refresh_from_db()
    assert adjustment.status == "approved"
    client.post(
        f"/quotas/{allocated.pk}/goals/", {"territory": t1.pk, "metric": "calls_per_week", "target": "30"}
    )
    assert ActivityGoal.objects.get().target == Decimal("30")
    page = client.get(f"/quotas/{allocated.pk}/")
    assert b"Calls per week" in page.content and b"pipeline" in page.content


def test_rep_and_outsider(client, active, allocated):
    client.force_login(active.rep_user)
    page = client.get(f"/quotas/{allocated.pk}/")
    assert page.status_code == 200
    assert b"E-T1 East 1" in page.content and b"W-T1" not in page.content
    assert b"Propose an adjustment" not in page.content and b"Run the allocation" not in page.content
    assert client.post(f"/quotas/{allocated.pk}/allocate/", {}).status_code == 403
    client.force_login(active.outsider)
    assert client.get(f"/quotas/{allocated.pk}/").status_code == 404
    assert client.get("/quotas/").status_code == 200


def test_a_large_table_goes_two_levels_at_a_time(client, active, allocated, monkeypatch):
    monkeypatch.setattr("quotas.views.TABLE_ROWS_MAX", 3)
    client.force_login(active.planner)

    def table(response) -> str:
        html = response.content.decode()
        return html.split('id="allocation-table"', 1)[1].split("</table>", 1)[0]

    page = table(client.get(f"/quotas/{allocated.pk}/"))
    assert "W West" in page and "W-D1 West D1" in page and "W-T1 West 1" not in page
    district = active.leaves["W-T1"].parent
    assert f"focus={district.pk}" in page
    response = client.get(f"/quotas/{allocated.pk}/", {"focus": district.pk})
    page = table(response)
    assert "W-T1 West 1" in page and "Rep W-T1" in page and "E-T1" not in page
    assert f"focus={active.west.pk}" in response.content.decode()  # the breadcrumb back up


def test_the_page_queues_a_large_allocation(
    client, active, quota_plan, monkeypatch, django_capture_on_commit_callbacks
):
    from unittest import mock

    monkeypatch.setattr("quotas.services.ALLOCATE_IN_BACKGROUND_FROM", 5)
    client.force_login(active.planner)
    with (
        mock.patch("quotas.tasks.allocate_plan.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        page = client.post(
            f"/quotas/{quota_plan.pk}/allocate/", {"method": "potential", "unit": "100"}, follow=True
        )
    delay.assert_called_once()
    html = page.content.decode()
    assert (
        "runs in the background" in html and 'id="allocation-job"' in html and 'data-status="queued"' in html
    )

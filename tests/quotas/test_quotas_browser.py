"""/quotas/<id>/ in a real browser: a district manager proposes moving quota between two of their
territories, the region manager above approves it, and the table shows the new amounts. Nothing
leaves the machine and the console stays clean."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

import pytest

from quotas.models import Quota, QuotaAdjustment
from territories.choices import PlanStatus
from tests.browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"  # tests/factories.UserFactory's password


def test_propose_and_approve_an_adjustment(live_server, world, allocated, hierarchy_managers, monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import expect, sync_playwright

    world.plan.status = PlanStatus.ACTIVE
    world.plan.effective_from = dt.date(2026, 1, 1)
    world.plan.published_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    world.plan.save()
    manager_district, _ = hierarchy_managers
    t1, t2 = world.leaves["W-T1"], world.leaves["W-T2"]
    external, errors = [], []
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = chromium.new_context(viewport={"width": 1280, "height": 1000})

        def only_local(route):
            if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
                route.continue_()
            else:
                external.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        page = context.new_page()
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(10_000)

        def login(username: str) -> None:
            context.clear_cookies()
            page.goto(live_server.url + "/login/")
            page.fill("#id_username", username)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_load_state()

        try:
            login(manager_district.username)
            page.goto(f"{live_server.url}/quotas/{allocated.pk}/")
            form = page.locator("#adjust-form")
            form.locator("select[name=component]").select_option("new")
            form.locator("select[name=period]").select_option(label="FY2026-Q1")
            form.locator("#from-territory").select_option(str(t1.pk))
            # Only siblings of the "from" territory are offered as "to".
            assert form.locator("#to-territory").input_value() == str(t2.pk)
            # Between reps: the rep lists follow the territory.
            form.locator("input[name=between][value=reps]").check()
            expect(form.locator("#from-rep option")).not_to_have_count(0)
            form.locator("input[name=between][value=territories]").check()
            form.locator("input[name=amount]").fill("2500")
            form.locator("textarea[name=reason]").fill("T2 inherits the Denver pipeline")
            form.locator("button[type=submit]").click()
            expect(page.locator(".message")).to_contain_text("waits for manager.west")
            assert QuotaAdjustment.objects.get().status == "pending"

            login(world.manager_west.username)
            page.goto(f"{live_server.url}/quotas/{allocated.pk}/")
            approvals = page.locator("#approvals")
            expect(approvals).to_contain_text("T2 inherits the Denver pipeline")
            approvals.locator("input[name=note]").fill("agreed")
            approvals.get_by_role("button", name="Approve").click()
            expect(page.locator(".message")).to_contain_text("approved and applied")
            q1 = allocated.fiscal_year.children.get(name="FY2026-Q1")
            amount = Quota.objects.get(
                quota_plan=allocated, period=q1, territory=t2, rep=None, component="new"
            ).amount
            assert str(amount) == "102500.00"
            row = page.locator("#allocation-table tr", has_text=re.compile(r"W-T2 West 2"))
            expect(row).to_contain_text("102,500")
            expect(page.locator("#history")).to_contain_text("Approved adjustment")
            assert external == [] and errors == []
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "quotas_adjust_approve.png"), full_page=True)
            raise
        finally:
            chromium.close()

"""The planner's editing tools in a real browser, inside /planner/<id>/: create a territory, preview
and save a rule, and run a balance job to completion, which opens the new scenario. Dialogs are
reachable and closable with the keyboard, nothing loads from outside, and the console stays clean."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from django.contrib.gis.geos import Point
from django.db import connection

from accounts.models import Account
from territories.choices import ChangeKind, JobStatus
from territories.models import AssignmentRule, BalanceJob, Change, Plan, Territory
from tests.browser_support import LOCAL_HOSTS, launched_chromium, screenshot_on_failure

pytestmark = pytest.mark.browser

PASSWORD = "pw-for-tests"  # tests.factories.UserFactory's password


@dataclass
class Browser:
    page: object
    base_url: str
    external_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == 200, (path, response and response.status)

    def assert_stayed_local_and_quiet(self) -> None:
        assert self.external_requests == []
        assert self.console_errors == []


@pytest.fixture
def spread_world(world):
    """The shared world with its accounts spread over a few degrees, so balancing has geography."""
    for n, account in enumerate(Account.objects.order_by("pk")):
        account.location = Point(-100 + (n % 4) * 1.5, 38 + (n // 4) * 1.5, srid=4326)
        account.save()
    return world


@pytest.fixture
def balance_in_a_thread(monkeypatch):
    """Run balance jobs in a background thread of this process instead of on a Celery worker, so
    the page sees a real queued → running → succeeded job without a broker (scoped to this test)."""
    from territories import tasks
    from territories.balancing import balance_job_run

    threads: list[threading.Thread] = []

    def run(job_id: int) -> None:
        try:
            balance_job_run(job=BalanceJob.objects.select_related("plan", "created_by").get(pk=job_id))
        finally:
            connection.close()

    def delay(job_id: int):
        thread = threading.Thread(target=run, args=(job_id,), daemon=True)
        thread.start()
        threads.append(thread)
        return SimpleNamespace(id=f"thread-{job_id}")

    monkeypatch.setattr(tasks.balance_plan, "delay", delay)
    yield threads
    for thread in threads:
        thread.join(timeout=60)


@pytest.fixture
def browser(live_server, spread_world, monkeypatch) -> Iterator[Browser]:
    with launched_chromium(monkeypatch) as chromium:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        session = Browser(page=page, base_url=live_server.url)

        def only_local(route):
            if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
                route.continue_()
            else:
                session.external_requests.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        page.on("console", lambda msg: msg.type == "error" and session.console_errors.append(msg.text))
        page.on("pageerror", lambda error: session.console_errors.append(str(error)))
        page.set_default_timeout(15_000)
        session.goto("/login/")
        page.fill("#id_username", spread_world.planner.username)
        page.fill("#id_password", PASSWORD)
        page.click("main button[type=submit], main input[type=submit]")
        page.wait_for_load_state("networkidle")
        yield session


def open_planner(browser: Browser, plan: Plan, query: str = "") -> None:
    browser.goto(f"/planner/{plan.pk}/{query}")
    browser.page.wait_for_selector("#planner[data-ready='1']")
    browser.page.wait_for_selector("#pt-tool-balance")


def focus_inside(page, dialog_id: str) -> bool:
    return page.evaluate("(id) => document.getElementById(id).contains(document.activeElement)", dialog_id)


def test_create_territory_preview_and_save_a_rule_and_balance_into_a_new_scenario(
    browser, spread_world, balance_in_a_thread
):
    world = spread_world
    page = browser.page
    with screenshot_on_failure(browser, "planner_tools"):
        open_planner(browser, world.plan)

        # Keyboard: the dialog opens from the toolbar with Enter, takes focus, closes with Escape
        # and gives focus back to its button.
        page.focus("#pt-tool-new")
        page.keyboard.press("Enter")
        page.wait_for_selector("#pt-territory-dialog[open]")
        assert focus_inside(page, "pt-territory-dialog")
        page.keyboard.press("Escape")
        page.wait_for_selector("#pt-territory-dialog:not([open])", state="attached")
        assert page.evaluate("document.activeElement.id") == "pt-tool-new"

        # Create a territory under the West district.
        district = Territory.objects.get(plan=world.plan, code="W-D1")
        page.click("#pt-tool-new")
        territory_dialog = page.locator("#pt-territory-dialog")
        territory_dialog.get_by_label("Name", exact=True).fill("West 3")
        territory_dialog.get_by_label("Code", exact=True).fill("W-T3")
        page.select_option("#pt-territory-parent", str(district.pk))
        page.click("#pt-territory-save")
        page.wait_for_selector("#pt-territory-dialog:not([open])", state="attached")
        created = Territory.objects.get(plan=world.plan, code="W-T3")
        assert created.parent == district and created.name == "West 3"
        assert Change.objects.filter(kind=ChangeKind.TERRITORY_CREATED, territory_to=created).exists()
        page.wait_for_function(
            "(v) => window.TesseraPlanner.plan.version === v", arg=Plan.objects.get(pk=world.plan.pk).version
        )

        # A rule: preview first (the count comes from the resolver), then save.
        page.click("#pt-tool-rules")
        page.wait_for_selector("#pt-rules-dialog[open]")
        page.click("#pt-rule-new")
        page.fill("#pt-rule-name", "Makers to West 1")
        page.select_option("#pt-rule-territory", str(world.leaves["W-T1"].pk))
        page.get_by_label("Condition 1: field").select_option("industry")
        page.get_by_label("Condition 1: operator").select_option("eq")
        page.get_by_label("Condition 1: value").fill("Manufacturing")
        assert page.is_disabled("#pt-rule-save")
        page.click("#pt-rule-preview")
        page.wait_for_selector("#pt-preview-count")
        # Eight accounts match; two already sit in W-T1, so six would move.
        assert page.text_content("#pt-preview-count") == "6 accounts would move"
        assert page.is_visible("#pt-preview-table")
        # The accounts that would move can be looked at on the map; the editor waits as it was.
        page.click("#pt-preview-select")
        page.wait_for_function("() => window.TesseraPlanner.selection().accountIds.length === 6")
        page.click("#pt-tool-rules")
        assert page.input_value("#pt-rule-name") == "Makers to West 1"
        assert page.text_content("#pt-preview-count") == "6 accounts would move"
        page.click("#pt-rule-save")
        page.wait_for_selector("#pt-rules-rows tr")
        assert "Makers to West 1" in page.text_content("#pt-rules-rows")
        rule = AssignmentRule.objects.get(plan=world.plan)
        assert rule.territory == world.leaves["W-T1"]
        assert Change.objects.filter(kind=ChangeKind.RULE_CHANGED, plan=world.plan).exists()
        page.keyboard.press("Escape")
        page.wait_for_selector("#pt-rules-dialog:not([open])", state="attached")

        # Balance: a rebalance job with a live progress bar that ends by opening the new scenario.
        page.click("#pt-tool-balance")
        page.wait_for_selector("#pt-balance-dialog[open]")
        for metric in ("revenue", "workload_hours"):
            page.uncheck(f"#pt-balance-form input[name=metric][value={metric}]")
        page.fill("#pt-balance-tolerance", "30")
        page.fill("#pt-balance-time", "5")
        page.fill("#pt-balance-name", "Balanced by the browser")
        page.click("#pt-balance-start")
        page.wait_for_selector("#pt-balance-job:not([hidden])")
        here = f"/planner/{world.plan.pk}/"
        page.wait_for_url(
            lambda url: re.search(r"/planner/\d+/$", url) and not url.endswith(here), timeout=60_000
        )
        job = BalanceJob.objects.get(plan=world.plan)
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert page.url.endswith(f"/planner/{job.produced_plan_id}/")
        assert job.produced_plan.name == "Balanced by the browser"
        assert job.parameters["metrics"] == ["count"] and job.parameters["tolerance"] == 0.3
        page.wait_for_selector("#planner[data-ready='1']")
        browser.assert_stayed_local_and_quiet()


def test_balance_query_opens_the_dialog_for_a_subtree_and_errors_name_fields(browser, spread_world):
    world = spread_world
    page = browser.page
    with screenshot_on_failure(browser, "planner_tools_balance_query"):
        open_planner(browser, world.plan, f"?balance={world.west.pk}")
        page.wait_for_selector("#pt-balance-dialog[open]")
        assert page.input_value("#pt-balance-subtree") == "W"
        page.keyboard.press("Escape")

        # A refused edit keeps the dialog open with the planner's input and names the field.
        page.click("#pt-tool-new")
        page.fill("#pt-territory-name", "Duplicate")
        page.fill("#pt-territory-code", "E-T1")
        page.click("#pt-territory-save")
        page.wait_for_selector("#pt-territory-dialog .pt-error:not([hidden])")
        assert "already used" in page.text_content("#pt-territory-dialog .pt-error")
        assert page.get_attribute("#pt-territory-code", "aria-invalid") == "true"
        assert page.input_value("#pt-territory-name") == "Duplicate"
        assert not Territory.objects.filter(name="Duplicate").exists()
        # The refusal is an expected 400, which Chromium logs as a failed resource load.
        browser.console_errors[:] = [e for e in browser.console_errors if "400" not in e]
        browser.assert_stayed_local_and_quiet()

        # A read-only (archived) plan: no editing tools, but a planner may still balance it into a
        # new scenario, so ?balance= still opens the dialog.
        Plan.objects.filter(pk=world.plan.pk).update(status="archived")
        open_planner(browser, world.plan, f"?balance={world.west.pk}")
        page.wait_for_selector("#pt-balance-dialog[open]")
        assert page.input_value("#pt-balance-subtree") == "W"
        assert page.locator("#pt-tool-new").count() == 0 and page.locator("#pt-tool-merge").count() == 0
        browser.assert_stayed_local_and_quiet()


def test_a_sweep_draws_the_trade_off_and_another_point_becomes_its_own_scenario(
    browser, spread_world, balance_in_a_thread
):
    world = spread_world
    page = browser.page
    with screenshot_on_failure(browser, "planner_tools_sweep"):
        open_planner(browser, world.plan)
        page.click("#pt-tool-balance")
        page.select_option("#pt-balance-mode", "sweep")
        assert page.is_visible("#pt-balance-sweep") and not page.is_visible("#pt-balance-disruption")
        for metric in ("revenue", "workload_hours"):
            page.uncheck(f"#pt-balance-form input[name=metric][value={metric}]")
        page.fill("#pt-balance-tolerance", "30")
        page.fill("#pt-balance-time", "3")
        page.fill("#pt-balance-sweep", "0, 5")
        page.click("#pt-balance-start")
        page.wait_for_selector("#pt-sweep:not([hidden])", timeout=60_000)
        sweep = BalanceJob.objects.get(plan=world.plan)
        assert sweep.status == JobStatus.SUCCEEDED and len(sweep.result["sweep"]) == 2
        # The chart is drawn (Chart.js from this server) and every point can be picked by keyboard.
        assert page.evaluate("() => !!Chart.getChart(document.getElementById('pt-sweep-chart'))")
        radios = page.locator("#pt-sweep-points input[type=radio]")
        assert radios.count() == 2
        chosen = sweep.result["disruption_weight"]
        other = next(
            p["disruption_weight"] for p in sweep.result["sweep"] if p["disruption_weight"] != chosen
        )
        other_index = [p["disruption_weight"] for p in sweep.result["sweep"]].index(other)
        radios.nth(other_index).focus()
        page.keyboard.press("Space")
        assert radios.nth(other_index).is_checked()
        assert page.text_content("#pt-sweep-open") == "Make and open the scenario for this point"
        page.click("#pt-sweep-open")
        here = f"/planner/{world.plan.pk}/"
        page.wait_for_url(
            lambda url: re.search(r"/planner/\d+/$", url) and not url.endswith(here), timeout=60_000
        )
        rerun = BalanceJob.objects.exclude(pk=sweep.pk).get(plan=world.plan)
        assert rerun.status == JobStatus.SUCCEEDED, rerun.error
        assert rerun.parameters["mode"] == "rebalance" and rerun.parameters["disruption_weight"] == other
        assert rerun.parameters["metrics"] == ["count"]
        assert page.url.endswith(f"/planner/{rerun.produced_plan_id}/")
        page.wait_for_selector("#planner[data-ready='1']")
        browser.assert_stayed_local_and_quiet()


def test_a_stale_edit_shows_the_conflict_keeps_the_input_and_saves_after_reload(browser, spread_world):
    from territories import services

    world = spread_world
    page = browser.page
    with screenshot_on_failure(browser, "planner_tools_conflict"):
        open_planner(browser, world.plan)
        page.click("#pt-tool-new")
        page.fill("#pt-territory-name", "East 3")
        page.fill("#pt-territory-code", "E-T3")
        # Someone else edits the plan meanwhile.
        services.territory_update(
            territory=world.east, name="East (renamed elsewhere)", expected_version=world.plan.version
        )
        page.click("#pt-territory-save")
        error = page.wait_for_selector("#pt-territory-dialog .pt-error:not([hidden])")
        assert "changed since you loaded it" in error.text_content()
        assert "your input is kept" in error.text_content()
        assert page.input_value("#pt-territory-name") == "East 3"
        assert page.input_value("#pt-territory-code") == "E-T3"
        assert not Territory.objects.filter(code="E-T3").exists()
        page.wait_for_function("(v) => window.TesseraPlanner.plan.version === v", arg=world.plan.version + 1)
        page.click("#pt-territory-save")
        page.wait_for_selector("#pt-territory-dialog:not([open])", state="attached")
        assert Territory.objects.filter(plan=world.plan, code="E-T3", name="East 3").exists()
        # The refused save is an expected 409, which Chromium logs as a failed resource load.
        browser.console_errors[:] = [e for e in browser.console_errors if "409" not in e]
        browser.assert_stayed_local_and_quiet()


def pick_territory(page, territory: Territory) -> None:
    page.click(f"#planner-tree tr[data-territory-id='{territory.pk}'] th button")
    page.wait_for_function("(id) => window.TesseraPlanner.selection().territoryId === id", arg=territory.pk)


def test_reps_split_merge_and_rule_edits_from_the_toolbar(browser, spread_world):
    from territories import services
    from territories.models import TerritoryMembership
    from tests.factories import RepFactory

    world = spread_world
    page = browser.page
    RepFactory(name="Olga Overlay", external_id="REP-OLGA")
    services.rule_add(
        plan=world.plan,
        territory=world.leaves["W-T2"],
        name="Shops",
        conditions=[{"field": "industry", "op": "eq", "value": "Retail"}],
    )
    with screenshot_on_failure(browser, "planner_tools_more"):
        open_planner(browser, world.plan)
        assert page.is_disabled("#pt-tool-split") and page.is_disabled("#pt-tool-merge")

        # Reps: find one by name, add it as overlay with half a share, save.
        leaf = Territory.objects.get(plan=world.plan, code="E-T1")
        pick_territory(page, leaf)
        page.click("#pt-tool-reps")
        page.fill("#pt-rep-search", "olga")
        page.click("#pt-rep-results button")
        page.get_by_label("Share of Olga Overlay").fill("0.5")
        page.locator("#pt-members-form button[type=submit]").click()
        page.wait_for_selector("#pt-members-dialog:not([open])", state="attached")
        olga = TerritoryMembership.objects.get(territory=leaf, rep__name="Olga Overlay")
        assert olga.role == "overlay" and float(olga.share) == 0.5

        # Split: the selected account goes to a new sibling territory.
        account = world.accounts["E-T1"][0]
        page.evaluate("(id) => window.TesseraPlanner.select({accountIds: [id]})", account.pk)
        pick_territory(page, leaf)
        page.click("#pt-tool-split")
        assert "1 selected accounts" in page.text_content("#pt-split-intro")
        page.fill("#pt-split-name", "East 1 north")
        page.locator("#pt-split-form button[type=submit]").click()
        page.wait_for_selector("#pt-split-dialog:not([open])", state="attached")
        new = Territory.objects.get(plan=world.plan, code="E-T1-B")
        assert new.parent_id == leaf.parent_id and new.account_assignments.get().account == account

        # Merge the new territory back into E-T2.
        page.wait_for_selector(f"#planner-tree tr[data-territory-id='{new.pk}']")
        pick_territory(page, new)
        page.click("#pt-tool-merge")
        page.select_option("#pt-merge-into", str(world.leaves["E-T2"].pk))
        page.locator("#pt-merge-form button[type=submit]").click()
        page.wait_for_selector("#pt-merge-dialog:not([open])", state="attached")
        assert not Territory.objects.filter(pk=new.pk).exists()
        assert account.assignments.get(plan=world.plan).territory == world.leaves["E-T2"]

        # Edit the rule to a list of industries, preview, save; then delete it with its own preview.
        page.click("#pt-tool-rules")
        page.click("#pt-rules-rows button")
        page.get_by_label("Condition 1: operator").select_option("in")
        page.get_by_label("Condition 1: value").fill("Retail, Biotech")
        page.click("#pt-rule-preview")
        page.wait_for_selector("#pt-preview-count")
        assert page.text_content("#pt-preview-count") == "0 accounts would move"
        page.click("#pt-rule-save")
        page.wait_for_selector("#pt-rule-form", state="hidden")
        rule = AssignmentRule.objects.get(plan=world.plan)
        assert rule.conditions == [{"field": "industry", "op": "in", "value": ["Retail", "Biotech"]}]
        page.click("#pt-rules-rows button")
        page.click("#pt-rule-delete-button")
        page.wait_for_selector("#pt-preview-count")
        assert page.text_content("#pt-rule-save").startswith("Delete rule (moves ")
        page.click("#pt-rule-save")
        page.wait_for_selector("#pt-rules-empty:not([hidden])")
        assert not AssignmentRule.objects.filter(plan=world.plan).exists()
        browser.assert_stayed_local_and_quiet()

"""The dashboard and warnings pages in a real browser: charts drawn by the vendored Chart.js, the
drill-down from region to accounts, the CSV export, "check now" with progress; nothing leaves the
machine and the console stays clean."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS, screenshot_on_failure

pytestmark = pytest.mark.browser

AS_OF = "2026-06-30"

# Distinct colours on a canvas: a blank or failed chart has one or two.
CANVAS_COLOURS = """(id) => {
    const canvas = document.getElementById(id);
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    for (let i = 0; i < data.length; i += 16) colours.add(data.slice(i, i + 4).join(','));
    return colours.size;
}"""


@dataclass
class Browser:
    page: object
    base_url: str
    external_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_responses: list[tuple[str, int]] = field(default_factory=list)

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == 200, (path, response and response.status)

    def login(self, username: str) -> None:
        self.goto("/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", "pw-for-tests")
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r"/$"))

    def assert_stayed_local_and_quiet(self) -> None:
        assert self.external_requests == []
        assert self.console_errors == []
        assert self.failed_responses == []


@pytest.fixture
def browser(live_server, sales, monkeypatch) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = chromium.new_context(viewport={"width": 1280, "height": 1100}, accept_downloads=True)
        page = context.new_page()
        session = Browser(page=page, base_url=live_server.url)

        def only_local(route):
            url = route.request.url
            if urlsplit(url).hostname not in LOCAL_HOSTS:
                session.external_requests.append(url)
                route.abort()
            elif urlsplit(url).path == "/favicon.ico":
                # Pages name an SVG icon (templates/base.html); a browser may still ask for this.
                route.fulfill(status=204, body="")
            else:
                route.continue_()

        context.route("**/*", only_local)
        page.on("console", lambda msg: msg.type == "error" and session.console_errors.append(msg.text))
        page.on("pageerror", lambda error: session.console_errors.append(str(error)))
        page.on(
            "response",
            lambda r: r.status >= 400 and session.failed_responses.append((r.url, r.status)),
        )
        page.set_default_timeout(15_000)
        try:
            yield session
        finally:
            chromium.close()


def test_manager_dashboard_charts_drill_down_and_export(browser, sales):
    page = browser.page
    world = sales.world
    with screenshot_on_failure(browser, "dashboard_manager"):
        browser.login("manager.west")
        browser.goto(f"/dashboard/?as_of={AS_OF}")
        page.wait_for_selector("html[data-dashboard-ready=true]")
        browser.assert_stayed_local_and_quiet()
        # The attainment chart has the manager's one district; booked 10,500 against 24,000.
        datasets = page.evaluate(
            "() => TesseraDashboard.charts.attainment.data.datasets.map(d => [d.label, d.data])"
        )
        assert datasets == [["Booked", [10500]], ["Quota", [24000]]]
        labels = page.evaluate("() => TesseraDashboard.charts.attainment.data.labels")
        assert labels == ["W-D1"]
        trend = page.evaluate("() => TesseraDashboard.charts.trend.data.datasets[1].data")
        assert trend[:6] == [0, 5250, 5250, 5250, 10500, 10500] and trend[6] is None
        for chart in ("attainment-chart", "trend-chart", "histogram-chart"):
            assert page.evaluate(CANVAS_COLOURS, chart) > 2, chart
        assert page.locator("#fair-gini").inner_text() != "—"
        assert "East" not in page.locator("#attainment-table").inner_text()

        # Drill: district → territory → rep → accounts.
        page.click("#attainment-table a:has-text('W-D1')")
        page.wait_for_selector("#attainment-table a:has-text('W-T1')")
        assert page.locator("#attainment-table tbody tr").count() == 2
        page.click("#attainment-table a:has-text('W-T1')")
        page.wait_for_selector("#attainment-table a:has-text('Rep W-T1')")
        page.click("#attainment-table a:has-text('Rep W-T1')")
        page.wait_for_selector("#accounts-table")
        text = page.locator("#accounts-table").inner_text()
        assert "W-T1 account 1" in text and "W-T1 account 2" in text
        page.click("nav.crumbs a:has-text('W-D1')")
        page.wait_for_selector("html[data-dashboard-ready=true]")

        with page.expect_download() as download_info:
            page.click("#export-csv")
        content = Path(download_info.value.path()).read_text()
        assert "W-T1" in content and "W-T2" in content and "E-T1" not in content
        browser.assert_stayed_local_and_quiet()
    assert world.manager_west.username == "manager.west"


def test_period_selector_changes_the_window(browser, sales):
    page = browser.page
    with screenshot_on_failure(browser, "dashboard_period"):
        browser.login("planner")
        browser.goto(f"/dashboard/?as_of={AS_OF}")
        page.wait_for_selector("html[data-dashboard-ready=true]")
        assert page.locator("#kpi-booked").inner_text() == "22,500"
        page.select_option("#period-select", "FY2026-Q1")
        page.click(".dash-filters button[type=submit]")
        page.wait_for_url(re.compile(r"period=FY2026-Q1"))
        page.wait_for_selector("html[data-dashboard-ready=true]")
        # Q1 holds the February bookings only.
        assert page.locator("#kpi-booked").inner_text() == "11,250"
        browser.assert_stayed_local_and_quiet()


def test_planner_checks_now_and_sees_warnings_with_their_action(browser, sales, monkeypatch):
    from analytics import services, tasks

    services.plan_balance_snapshot_take(plan=sales.plan)
    # No Celery worker here: the task runs where it is sent (the live server's thread), so the page's
    # polling sees a real run go from queued to done.
    monkeypatch.setattr(
        tasks.check_warnings_run, "delay", lambda check_id: tasks.check_warnings_run.apply(args=[check_id])
    )
    monkeypatch.setattr(
        "analytics.services.timezone.localdate", lambda *a, **k: __import__("datetime").date(2026, 6, 30)
    )
    page = browser.page
    with screenshot_on_failure(browser, "warnings_check_now"):
        browser.login("planner")
        browser.goto("/warnings/")
        assert "No open warning signs" in page.locator("#warnings-table").inner_text()
        page.click("#check-now")
        page.wait_for_selector("#warnings-table tr[data-kind=attainment_gap]")
        row = page.locator("#warnings-table tr[data-kind=attainment_gap]")
        assert "W-D1" in row.inner_text() or "West D1" in row.inner_text()
        link = row.locator("a.action")
        assert (
            link.get_attribute("href")
            == f"/planner/{sales.plan.pk}/?balance={sales.world.leaves['W-T1'].parent_id}"
        )
        assert "a preview moves" in row.inner_text() or "no preview" in row.inner_text()
        browser.assert_stayed_local_and_quiet()

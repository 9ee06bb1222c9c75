"""The browser side: /api/docs/ renders Swagger UI from vendored files with no request leaving the
machine, and /imports/ uploads a file with a live progress bar and a per-row report."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from accounts.models import Account
from tests.browser_support import LOCAL_HOSTS, launched_chromium, screenshot_on_failure

from ..factories import PlanFactory, UserFactory

pytestmark = pytest.mark.browser

PASSWORD = "browser-test-pw"


@dataclass
class Browser:
    page: object
    base_url: str
    external_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def goto(self, path: str, status: int = 200) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == status, (path, response and response.status)

    def login(self, username: str) -> None:
        self.goto("/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def assert_stayed_local_and_quiet(self) -> None:
        assert self.external_requests == []
        assert self.console_errors == []


@pytest.fixture
def people(transactional_db):
    return {
        "planner": UserFactory(username="planner-b", role="planner", password=PASSWORD),
        "manager": UserFactory(username="manager-b", role="manager", password=PASSWORD),
    }


@pytest.fixture
def browser(live_server, people, monkeypatch) -> Iterator[Browser]:
    with launched_chromium(monkeypatch) as chromium:
        context = chromium.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        session = Browser(page=page, base_url=live_server.url)

        def only_local(route):
            url = route.request.url
            if urlsplit(url).hostname in LOCAL_HOSTS or url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                session.external_requests.append(url)
                route.abort()

        context.route("**/*", only_local)
        page.on("console", lambda msg: msg.type == "error" and session.console_errors.append(msg.text))
        page.on("pageerror", lambda error: session.console_errors.append(str(error)))
        page.set_default_timeout(15_000)
        yield session


def test_api_docs_render_offline_from_vendored_swagger_ui(browser):
    page = browser.page
    with screenshot_on_failure(browser, "api_docs"):
        browser.goto("/api/docs/")
        page.wait_for_selector(".swagger-ui .information-container .title")
        assert "Tessera API" in page.inner_text(".swagger-ui .information-container .title")
        # The operations come from /api/schema/: the webhook paths are listed.
        page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/webhooks/']")
        scripts = page.eval_on_selector_all(
            "script[src], link[rel=stylesheet]", "els => els.map(e => e.src || e.href)"
        )
        assert scripts and all("/static/vendor/swagger-ui/" in url for url in scripts), scripts
        browser.assert_stayed_local_and_quiet()


def test_imports_page_is_for_planners_only(browser):
    browser.goto("/imports/", status=200)  # the login page, after a redirect
    assert "/login/" in browser.page.url
    browser.login("manager-b")
    browser.goto("/imports/", status=403)
    assert "Imports are for planners" in browser.page.inner_text("main")


def test_a_planner_uploads_accounts_and_reads_the_row_report(browser, tmp_path):
    PlanFactory(name="Export me")
    good = tmp_path / "accounts.csv"
    good.write_text("External ID,Name,Revenue\nB-1,Browser One,100\nB-2,Browser Two,200\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("External ID,Name,Revenue\nB-3,Fine,1\nB-4,,lots\n")
    page = browser.page
    with screenshot_on_failure(browser, "imports_page"):
        browser.login("planner-b")
        browser.goto("/imports/")
        export_links = page.eval_on_selector_all("#export-links a", "els => els.map(e => e.href)")
        assert len(export_links) == 4 and all(
            re.search(r"/api/v1/plans/\d+/export/\?format=", u) for u in export_links
        )

        page.set_input_files("#import-file", str(good))
        page.click("#import-submit")
        page.wait_for_selector("#import-report:not([hidden])")
        assert page.eval_on_selector("#import-progress", "el => el.value") == 100
        assert "Imported 2 rows" in page.inner_text("#import-message")
        assert set(Account.objects.filter(external_id__startswith="B-").values_list("name", flat=True)) == {
            "Browser One",
            "Browser Two",
        }

        page.set_input_files("#import-file", str(bad))
        page.click("#import-submit")
        page.wait_for_selector("#import-rows tbody tr")
        rows = page.eval_on_selector_all(
            "#import-rows tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
        )
        fields = {(r[0], r[3]) for r in rows}
        assert ("3", "name") in fields and ("3", "revenue") in fields
        assert "Nothing was written" in page.inner_text("#import-message")
        assert not Account.objects.filter(external_id__in=["B-3", "B-4"]).exists()
        recent = page.eval_on_selector_all(
            "#recent-imports tbody tr", "trs => trs.map(tr => tr.cells[2].textContent)"
        )
        assert recent == ["bad.csv", "accounts.csv"]
        browser.assert_stayed_local_and_quiet()

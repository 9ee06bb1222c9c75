"""The /settings/tokens/ page in a real browser: create a token with chosen scopes, copy the key shown
once, use it against the API, revoke it; nothing leaves the machine and the console stays clean."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests

from accounts.choices import Role
from tests.browser_support import ARTIFACTS, CHROMIUM

pytestmark = pytest.mark.browser

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
PASSWORD = "browser-test-pw"


@pytest.fixture
def manager(transactional_db, django_user_model):
    return django_user_model.objects.create_user(username="mgr", password=PASSWORD, role=Role.MANAGER)


def test_create_use_and_revoke_a_token(live_server, manager, monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    external, console = [], []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        context = chromium.new_context()
        page = context.new_page()

        def only_local(route):
            if urlsplit(route.request.url).hostname in {"localhost", "127.0.0.1", "::1"}:
                route.continue_()
            else:
                external.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        page.on("console", lambda msg: msg.type == "error" and console.append(msg.text))
        page.on("pageerror", lambda error: console.append(str(error)))
        page.set_default_timeout(10_000)
        try:
            page.goto(live_server.url + "/login/?next=/settings/tokens/")
            page.fill("#id_username", "mgr")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r"/settings/tokens/$"))
            assert page.locator("text=No tokens yet.").is_visible()

            page.click("button:has-text('Create token')")  # nothing chosen: the form says what is missing
            assert page.locator("text=Choose at least one scope.").is_visible()

            page.fill("#id_name", "Pipeline")
            page.check("input[name=scopes][value=read]")
            page.check("input[name=scopes][value=route]")
            page.click("button:has-text('Create token')")
            key = page.input_value("#new-key")
            assert key.startswith("tsr_")
            row = page.locator("#token-table tbody tr", has_text="Pipeline")
            assert "read, route" in row.inner_text()

            api = live_server.url + "/api/v1/me/"
            me = requests.get(api, headers={"Authorization": f"Token {key}"}, timeout=10)
            assert me.status_code == 200 and me.json()["token_scopes"] == ["read", "route"]

            page.reload()
            assert page.locator("#new-key").count() == 0  # shown once only
            assert key not in page.content()

            page.click("button[aria-label='Revoke token Pipeline']")
            assert page.locator("text=is revoked").is_visible()
            assert "revoked" in page.locator("#token-table tbody tr", has_text="Pipeline").inner_text()
            assert requests.get(api, headers={"Authorization": f"Token {key}"}, timeout=10).status_code == 401
            assert external == [] and console == []
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "tokens_page.png"), full_page=True)
            raise
        finally:
            chromium.close()

"""The plan, compare, review and account pages in a real browser: clone a plan from the list and
compare it with its base (deltas, disruption, the map drawn), take a plan through review with a
manager's comment and publish it, and search accounts. Keyboard only where a user would use it,
nothing loads from another host, and the console stays clean."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from django.contrib.gis.geos import Point
from django.utils import timezone

from territories import services
from territories.choices import PlanStatus
from territories.models import Plan, PlanComment
from tests.browser_support import LOCAL_HOSTS, launched_chromium, screenshot_on_failure

from ..factories import GeoUnitFactory, assign_unit, square

pytestmark = pytest.mark.browser

PASSWORD = "pw-for-tests"  # tests.factories.UserFactory's password

# Rendered features per layer id of the map in window[name].map: proof the layers were drawn.
RENDERED_LAYERS = """(name) => {
    const counts = {};
    for (const feature of window[name].map.queryRenderedFeatures()) {
        counts[feature.layer.id] = (counts[feature.layer.id] || 0) + 1;
    }
    return counts;
}"""
LAYER_VISIBILITY = "(id) => window.TesseraCompare.map.getLayoutProperty(id, 'visibility')"


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
def mapped_world(world):
    """The shared world on real-looking geography: a state, one unit per leaf territory, and the
    accounts spread inside their territory's unit (committed: the live server has its own connection)."""
    GeoUnitFactory(level="state", code="08", name="Colorado", geom=square(-109, 37, 7))
    for n, code in enumerate(("E-T1", "E-T2", "W-T1", "W-T2")):
        x0, y0 = -108 + (n % 2) * 2, 38 + (n // 2) * 2
        assign_unit(world.plan, GeoUnitFactory(geom=square(x0, y0, 2)), world.leaves[code])
        for k, account in enumerate(world.accounts[code]):
            account.location = Point(x0 + 0.5 + k * 0.8, y0 + 1, srid=4326)
            account.save()
    return world


@pytest.fixture
def chromium(live_server, monkeypatch):
    with launched_chromium(monkeypatch) as browser:
        yield browser


@pytest.fixture
def sign_in(chromium, live_server):
    """sign_in(username) → a Browser in a fresh context, signed in through the login page."""

    def open_as(username: str) -> Browser:
        context = chromium.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        session = Browser(page=page, base_url=live_server.url)

        def only_local(route):
            url = route.request.url
            if urlsplit(url).hostname in LOCAL_HOSTS:
                route.continue_()
            else:
                session.external_requests.append(url)
                route.abort()

        context.route("**/*", only_local)
        page.on("console", lambda msg: msg.type == "error" and session.console_errors.append(msg.text))
        page.on("pageerror", lambda error: session.console_errors.append(str(error)))
        page.set_default_timeout(15_000)
        session.goto("/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{live_server.url}/")  # the plan list, once the login went through
        return session

    return open_as


def wait_for_map(browser: Browser, selector: str, name: str) -> dict:
    """Wait until the page's map has drawn its data; the rendered features per layer."""
    browser.page.wait_for_selector(f"{selector}[data-ready=true]")
    layers = browser.page.evaluate(RENDERED_LAYERS, name)
    assert layers.get("states-fill"), layers  # the offline base layer
    return layers


def test_clone_from_the_list_and_compare_with_its_base(sign_in, mapped_world):
    world = mapped_world
    browser = sign_in("planner")
    page = browser.page
    with screenshot_on_failure(browser, "scenarios_clone_compare"):
        row = page.locator(f"tr[data-plan='{world.plan.pk}']")
        row.locator("summary", has_text="Clone").focus()
        page.keyboard.press("Enter")
        name_field = row.locator("input[name=name]")
        name_field.fill("Browser scenario")
        name_field.press("Enter")
        page.wait_for_selector("text=Scenario 'Browser scenario' created from 'World plan'.")
        clone = Plan.objects.get(name="Browser scenario")
        assert clone.based_on_id == world.plan.pk
        moved = world.accounts["W-T1"][0]
        services.account_assignments_move(
            plan=clone, account_ids=[moved.pk], territory=clone.territories.get(code="W-T2")
        )

        browser.goto("/")
        compare_button = page.locator("#compare-picked")
        assert compare_button.is_disabled()
        for plan in (clone, world.plan):
            page.locator(f"tr[data-plan='{plan.pk}'] input.pick").focus()
            page.keyboard.press("Space")
        assert compare_button.is_enabled()
        compare_button.focus()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(rf"/plans/compare/\?a={world.plan.pk}&b={clone.pk}$"))

        assert page.inner_text("#moved-total") == "1"
        assert page.inner_text("#disruption-accounts") == "12.5%"
        cells = page.locator("#territory-deltas tr[data-code='W-T1'] td").all_inner_texts()
        assert cells[:3] == ["2", "1", "−1"]
        assert page.locator("#moved-accounts").inner_text().count(moved.name) == 1
        layers = wait_for_map(browser, "#compare-map", "TesseraCompare")
        assert layers["plan-a-line"] >= 4 and layers["plan-b-line"] >= 4 and layers["moved"] == 1
        assert "B: 4 territories" in page.inner_text("#compare-map-status")
        page.uncheck("#show-a")
        assert page.evaluate(LAYER_VISIBILITY, "plan-a-line") == "none"
        page.check("#show-a")

        # Side by side: B moves to a second map that follows the first.
        page.locator("input[name=compare-view][value=side]").focus()
        page.keyboard.press("Space")
        page.wait_for_selector("#compare-map-b[data-ready=true]")
        assert page.evaluate(LAYER_VISIBILITY, "plan-b-line") == "none"
        right = page.evaluate(
            "() => window.TesseraCompare.mapB.queryRenderedFeatures().map((f) => f.layer.id)"
        )
        assert "plan-b-line" in right and "moved" in right and "plan-a-line" not in right
        centre = page.evaluate(
            """() => {
                const {map, mapB} = window.TesseraCompare;
                map.jumpTo({center: [-106.5, 39.5], zoom: 7});
                const c = mapB.getCenter();
                return [c.lng, c.lat, mapB.getZoom()];
            }"""
        )
        assert centre == pytest.approx([-106.5, 39.5, 7], abs=1e-6)
        browser.assert_stayed_local_and_quiet()


def test_review_comment_approve_and_publish(sign_in, mapped_world):
    world = mapped_world
    review = f"/plans/{world.plan.pk}/review/"
    planner = sign_in("planner")
    with screenshot_on_failure(planner, "scenarios_review_planner"):
        planner.goto(review)
        planner.page.click("button[data-status=in_review]")
        planner.page.wait_for_selector("#plan-status:has-text('In review')")
        planner.assert_stayed_local_and_quiet()

    manager = sign_in("manager.west")
    page = manager.page
    with screenshot_on_failure(manager, "scenarios_review_manager"):
        manager.goto(review)
        assert page.locator("button[data-status=approved]").count() == 0
        page.focus("#comment-body")
        page.keyboard.type("W-T2 needs a second rep.")
        page.select_option("#comment-territory", label="W-T2 West 2")
        page.click("#comment-form button[type=submit]")
        page.wait_for_selector("#comments li:has-text('W-T2 needs a second rep.')")
        assert page.inner_text("#comment-count") == "1"
        assert page.input_value("#comment-body") == ""
        manager.assert_stayed_local_and_quiet()
    comment = PlanComment.objects.get()
    assert comment.author.username == "manager.west" and comment.territory.code == "W-T2"

    page = planner.page
    with screenshot_on_failure(planner, "scenarios_review_approve"):
        planner.goto(review)
        assert "W-T2 needs a second rep." in page.inner_text("#comments")
        assert "Read the 1 comment before approving." in page.inner_text("#approve-note")
        page.click("button[data-status=approved]")
        page.wait_for_selector("#plan-status:has-text('Approved')")
        assert "Comments are taken while a plan is in review" in page.inner_text("#comment-refusal")
        effective = timezone.localdate().isoformat()
        page.fill("#effective-from", effective)
        page.click("#publish-form button[type=submit]")
        page.wait_for_selector("#plan-status:has-text('Active')")
        timeline = page.inner_text("#timeline")
        assert "Draft → In review" in timeline and "In review → Approved" in timeline
        assert f"Approved → Active, effective from {effective}" in timeline
        planner.assert_stayed_local_and_quiet()
    world.plan.refresh_from_db()
    assert world.plan.status == PlanStatus.ACTIVE


def test_account_search_and_detail_map(sign_in, mapped_world):
    world = mapped_world
    Plan.objects.filter(pk=world.plan.pk).update(
        status=PlanStatus.ACTIVE, effective_from=timezone.localdate(), published_at=timezone.now()
    )
    browser = sign_in("manager.west")
    page = browser.page
    target = world.accounts["W-T2"][1]
    with screenshot_on_failure(browser, "scenarios_account_search"):
        browser.goto("/accounts/")
        assert page.locator("#account-results tbody tr").count() == 4  # West only
        page.focus("#q")
        page.keyboard.type(target.external_id)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/accounts/\?q="))
        rows = page.locator("#account-results tbody tr")
        assert rows.count() == 1 and target.name in rows.inner_text()
        page.click(f"text={target.name}")
        page.wait_for_url(re.compile(rf"/accounts/{target.pk}/$"))
        assert "W-T2 West 2" in page.inner_text("#owner")
        assert "which belongs to W-T2 West 2" in page.inner_text("#why")
        layers = wait_for_map(browser, "#small-map", "TesseraSmallMap")
        assert layers["points"] == 1 and layers["outlines-fill"] >= 1  # a polygon may span tiles
        browser.assert_stayed_local_and_quiet()

"""The admin's maps in a real browser: OpenLayers loads from this server, draws the state outlines and
the edited geometry, lets a staff user draw points and polygons, and nothing leaves the machine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from django.contrib.gis.geos import MultiPolygon, Point, Polygon

from accounts.models import Account
from territories.choices import UnitLevel
from territories.models import GeoUnit
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS, screenshot_on_failure

pytestmark = pytest.mark.browser

PASSWORD = "browser-test-pw"

# Resolves once the widget's map has loaded every source (the state GeoJSON included) and drawn.
WAIT_FOR_MAP = """(name) => new Promise((resolve) => {
    const map = window[name].map;
    map.once('rendercomplete', () => resolve(true));
    map.render();
})"""
# The features of every layer under the view's centre pixel: proof the layers were drawn there.
FEATURES_AT_CENTRE = """(name) => {
    const map = window[name].map;
    const pixel = map.getPixelFromCoordinate(map.getView().getCenter());
    const hits = [];
    map.forEachFeatureAtPixel(pixel, (feature) => {
        hits.push(feature.get('name') || feature.getGeometry().getType());
    }, {hitTolerance: 2});
    return hits;
}"""
STATE_FEATURE_COUNT = """(name) => {
    const states = window[name].map.getLayers().item(0).getLayers().item(0);
    return states.getSource().getFeatures().length;
}"""
# Distinct colours on the map's canvases: a blank or failed map has one or two.
CANVAS_COLOURS = """(mapId) => {
    const colours = new Set();
    for (const canvas of document.querySelectorAll('#' + mapId + ' canvas')) {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < data.length; i += 4) {
            colours.add(data.slice(i, i + 4).join(','));
        }
    }
    return colours.size;
}"""


def square(lon: float, lat: float, size: float) -> MultiPolygon:
    ring = ((lon, lat), (lon + size, lat), (lon + size, lat + size), (lon, lat + size), (lon, lat))
    return MultiPolygon(Polygon(ring), srid=4326)


def geo_unit(level, code, name, shape, parent=None) -> GeoUnit:
    return GeoUnit.objects.create(
        level=level,
        code=code,
        name=name,
        parent=parent,
        geom=shape,
        geom_simplified=shape,
        centroid=shape.point_on_surface,
    )


@dataclass
class Browser:
    page: object
    base_url: str
    external_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    responses: list[tuple[str, int]] = field(default_factory=list)

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == 200, (path, response and response.status)

    def assert_stayed_local_and_quiet(self) -> None:
        assert self.external_requests == []
        assert self.console_errors == []


@pytest.fixture
def geography(transactional_db, django_user_model):
    """A superuser, a state, a county in it and an account in the county, committed so that the
    live server's own connection sees them."""
    django_user_model.objects.create_superuser(username="admin", email="admin@example.com", password=PASSWORD)
    state = geo_unit(UnitLevel.STATE, "08", "Colorado", square(-109, 37, 7))
    county = geo_unit(UnitLevel.COUNTY, "08031", "Denver", square(-105.1, 39.6, 0.3), parent=state)
    account = Account.objects.create(
        external_id="ADM-ACC-B1", name="Acme Rockies", location=Point(-104.95, 39.75, srid=4326)
    )
    return {"state": state, "county": county, "account": account}


@pytest.fixture
def browser(live_server, geography, monkeypatch) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread, and Django refuses ORM calls from a
    # thread with a running loop; the tests' ORM calls are plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = chromium.new_context(viewport={"width": 1280, "height": 1100})
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
        page.on("response", lambda response: session.responses.append((response.url, response.status)))
        page.set_default_timeout(10_000)

        session.goto("/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(re.compile(r"/admin/$"))
        try:
            yield session
        finally:
            chromium.close()


def open_map(browser: Browser, path: str, widget: str) -> None:
    browser.goto(path)
    # A script or style from another host shows up here, before any waiting for the map.
    browser.assert_stayed_local_and_quiet()
    browser.page.wait_for_selector(f"#id_{widget.removeprefix('geodjango_')}_map .ol-viewport canvas")
    assert browser.page.evaluate(WAIT_FOR_MAP, widget) is True
    states = [status for url, status in browser.responses if "base-states.geojson" in url]
    assert states and states[-1] in (200, 304), states


def test_county_page_draws_boundary_over_state_outlines(browser, geography):
    county = geography["county"]
    with screenshot_on_failure(browser, "admin_county_map"):
        open_map(browser, f"/admin/territories/geounit/{county.pk}/change/", "geodjango_geom")
        assert browser.page.locator("#id_geom_map .ol-viewport canvas").count() >= 1
        assert browser.page.evaluate(STATE_FEATURE_COUNT, "geodjango_geom") == 1
        hits = browser.page.evaluate(FEATURES_AT_CENTRE, "geodjango_geom")
        assert "MultiPolygon" in hits  # the county being edited
        assert "Colorado" in hits  # the base layer underneath
        assert browser.page.evaluate(CANVAS_COLOURS, "id_geom_map") > 2
        browser.assert_stayed_local_and_quiet()


def test_account_page_shows_the_location_and_a_click_moves_it(browser, geography):
    account = geography["account"]
    page = browser.page
    with screenshot_on_failure(browser, "admin_account_map"):
        open_map(browser, f"/admin/accounts/account/{account.pk}/change/", "geodjango_location")
        hits = page.evaluate(FEATURES_AT_CENTRE, "geodjango_location")
        assert "Point" in hits
        assert "Colorado" in hits
        assert page.evaluate(CANVAS_COLOURS, "id_location_map") > 2

        page.click("#id_location_div_map .clear_features a")
        box = page.locator("#id_location_map").bounding_box()
        x, y = box["width"] / 2 + 60, box["height"] / 2 + 40
        page.mouse.click(box["x"] + x, box["y"] + y)
        expected = page.evaluate(
            "([x, y]) => ol.proj.toLonLat(geodjango_location.map.getCoordinateFromPixel([x, y]))", [x, y]
        )
        assert page.input_value("#id_location") != ""
        page.click("input[name=_save]")
        page.wait_for_url(re.compile(r"/admin/accounts/account/$"))
        browser.assert_stayed_local_and_quiet()

    account.refresh_from_db()
    assert account.location.x == pytest.approx(expected[0], abs=1e-6)
    assert account.location.y == pytest.approx(expected[1], abs=1e-6)


def test_a_polygon_drawn_on_the_add_page_becomes_a_unit(browser, geography):
    page = browser.page
    with screenshot_on_failure(browser, "admin_geounit_draw"):
        open_map(browser, "/admin/territories/geounit/add/", "geodjango_geom")
        page.select_option("#id_level", UnitLevel.CUSTOM)
        page.fill("#id_code", "DRAWN-1")
        page.fill("#id_name", "Drawn by hand")
        box = page.locator("#id_geom_map").bounding_box()
        corners = [(200, 150), (400, 150), (400, 300), (200, 300)]
        for px, py in [*corners, corners[0]]:  # clicking the first vertex again closes the ring
            page.mouse.click(box["x"] + px, box["y"] + py)
        assert '"MultiPolygon"' in page.input_value("#id_geom")
        page.click("input[name=_save]")
        page.wait_for_url(re.compile(r"/admin/territories/geounit/$"))
        browser.assert_stayed_local_and_quiet()

    unit = GeoUnit.objects.get(level=UnitLevel.CUSTOM, code="DRAWN-1")
    assert unit.geom.srid == 4326
    assert unit.geom.num_points == 5
    assert unit.geom.contains(unit.centroid)
    assert unit.area_sq_km > 0

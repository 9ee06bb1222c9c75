"""The Django admin: every model's pages render, big lists stay cheap, the audit log stays read-only,
token hashes stay hidden, and no page needs the internet (OpenLayers and the base map are local)."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.gis.geos import GEOSGeometry, MultiPolygon, Point, Polygon
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

from accounts.choices import Role, TokenScope
from accounts.models import Account, ApiToken, PostalCode, Rep, User
from quotas.choices import Component, PeriodKind
from quotas.models import Booking, FiscalPeriod, Quota, QuotaPlan
from territories.choices import AssignmentSource, ChangeKind, JobStatus, UnitLevel
from territories.models import (
    AccountAssignment,
    AssignmentRule,
    BalanceJob,
    BaseTile,
    Change,
    GeoUnit,
    Plan,
    PlanComment,
    RulePostalCode,
    Territory,
    TerritoryMembership,
    UnitAssignment,
)
from tessera_common.widgets import OfflineMapWidget

REPO = Path(settings.BASE_DIR)
PROJECT_APPS = ("accounts", "territories", "quotas", "analytics", "integrations")
# Admins with no add page: the change log is append-only, balance jobs come from the balance service.
NO_ADD_PAGE = {"territories.Change", "territories.BalanceJob"}
# Quota adjustments, relief and history come from the quota services only.
NO_ADD_PAGE |= {"quotas.QuotaAdjustment", "quotas.QuotaRelief", "quotas.QuotaChange"}
NO_ADD_PAGE |= {"integrations.WebhookDelivery", "integrations.ImportJob"}
# Warning signs, check runs, snapshots and caches come from the analytics services only.
NO_ADD_PAGE |= {"analytics.WarningSign", "analytics.WarningCheck", "analytics.PlanBalanceSnapshot"}
NO_ADD_PAGE |= {"analytics.ReadCache", "territories.BaseTile"}
# Anything that would make a page fetch from another host.
EXTERNAL_MARKERS = ("cdn", "openstreetmap", "//unpkg", "jsdelivr", "earthdata")
EXTERNAL_ASSET = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""", re.I)
TOKEN_KEY = "tsr_test-key-0123456789abcdefghijklmnopqrstuvwxyz"


def square(lon: float, lat: float, size: float = 1.0) -> MultiPolygon:
    ring = ((lon, lat), (lon + size, lat), (lon + size, lat + size), (lon, lat + size), (lon, lat))
    return MultiPolygon(Polygon(ring), srid=4326)


def geo_unit(level: str, code: str, name: str, shape: MultiPolygon, parent: GeoUnit | None = None) -> GeoUnit:
    return GeoUnit.objects.create(
        level=level,
        code=code,
        name=name,
        parent=parent,
        geom=shape,
        geom_simplified=shape,
        centroid=shape.point_on_surface,
        area_sq_km=1.0,
    )


def model_label(model) -> str:
    return model._meta.label


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def assert_offline(html: str) -> None:
    # CSRF tokens are random letters: one spelling "cdn" now and then is no reference to a CDN.
    lowered = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html).lower()
    for marker in EXTERNAL_MARKERS:
        assert marker not in lowered, f"page references {marker!r}"
    assert not EXTERNAL_ASSET.search(html), EXTERNAL_ASSET.search(html).group(0)


@pytest.fixture
def objects(admin_user) -> dict[type, object]:
    """One row of every registered model, linked the way real data is."""
    rep_user = User.objects.create_user(username="rep.one", password="pw", role=Role.REP)
    token = ApiToken.objects.create(
        user=rep_user,
        name="CRM sync",
        prefix=TOKEN_KEY[:12],
        key_hash=ApiToken.hash_key(TOKEN_KEY),
        scopes=[TokenScope.READ, TokenScope.ROUTE],
    )
    postal = PostalCode.objects.create(
        code="80202", location=Point(-104.99, 39.75, srid=4326), city="Denver", state="CO"
    )
    state = geo_unit(UnitLevel.STATE, "08", "Colorado", square(-109, 37, 7))
    county = geo_unit(UnitLevel.COUNTY, "08031", "Denver", square(-105.1, 39.6, 0.3), parent=state)
    account = Account.objects.create(
        external_id="ADM-ACC-1",
        name="Acme Rockies",
        location=Point(-104.99, 39.75, srid=4326),
        city="Denver",
        state="CO",
        postal_code="80202",
    )
    rep = Rep.objects.create(
        external_id="ADM-REP-1", name="Rita Rep", user=rep_user, home_location=Point(-105, 39.7, srid=4326)
    )
    plan = Plan.objects.create(name="FY26 plan", owner=admin_user)
    region = Territory.objects.create(plan=plan, code="W", name="West", level_name="region")
    leaf = Territory.objects.create(plan=plan, parent=region, code="W-1", name="Rockies")
    membership = TerritoryMembership.objects.create(territory=leaf, rep=rep)
    rule = AssignmentRule.objects.create(
        plan=plan,
        territory=leaf,
        name="Denver ZIPs",
        priority=10,
        conditions=[{"field": "postal_code", "op": "in_postal_list"}],
    )
    RulePostalCode.objects.bulk_create(
        RulePostalCode(rule=rule, postal_code=c) for c in ("80202", "80203", "80204")
    )
    account_assignment = AccountAssignment.objects.create(
        plan=plan, account=account, territory=leaf, source=AssignmentSource.RULE, rule=rule
    )
    unit_assignment = UnitAssignment.objects.create(plan=plan, unit=county, territory=leaf)
    job = BalanceJob.objects.create(
        plan=plan,
        created_by=admin_user,
        parameters={"territories": 4, "tolerance": 0.05},
        result={"max_deviation": 0.031},
        status=JobStatus.SUCCEEDED,
        progress=100,
    )
    change = Change.objects.create(
        plan=plan,
        actor=admin_user,
        kind=ChangeKind.ACCOUNT_MOVED,
        account=account,
        unit=county,
        territory_to=leaf,
        plan_version=2,
        payload={"account": "ADM-ACC-1", "to": "W-1"},
    )
    year = FiscalPeriod.objects.create(
        kind=PeriodKind.YEAR, name="FY2041", start=dt.date(2041, 1, 1), end=dt.date(2041, 12, 31)
    )
    quarter = FiscalPeriod.objects.create(
        kind=PeriodKind.QUARTER,
        name="FY2041-Q1",
        start=dt.date(2041, 1, 1),
        end=dt.date(2041, 3, 31),
        parent=year,
    )
    quota_plan = QuotaPlan.objects.create(name="FY26 quotas", territory_plan=plan, fiscal_year=year)
    quota = Quota.objects.create(
        quota_plan=quota_plan,
        period=quarter,
        territory=leaf,
        rep=rep,
        component=Component.NEW_BUSINESS,
        amount=Decimal("250000"),
    )
    booking = Booking.objects.create(
        external_id="ADM-OPP-1",
        account=account,
        amount=Decimal("12000"),
        booked_on=dt.date(2041, 2, 3),
        component=Component.NEW_BUSINESS,
        rep=rep,
    )
    comment = PlanComment.objects.create(plan=plan, author=admin_user, territory=leaf, body="Looks fair.")
    from quotas.models import ActivityGoal, QuotaAdjustment, QuotaChange, QuotaRelief

    quota_rows = [
        QuotaAdjustment.objects.create(
            quota_plan=quota_plan, component=Component.NEW_BUSINESS, period=quarter, parent_territory=region,
            from_territory=leaf, to_territory=leaf, amount=Decimal("10"), reason="x", proposed_by=admin_user,
        ),
        QuotaRelief.objects.create(
            quota_plan=quota_plan, event="assignment.changed", batch="b1", account=account,
            account_external_id="ADM-ACC-1", account_name="Acme Rockies", from_code="W-1", to_code="W-1",
            effective_from=dt.date(2041, 2, 1), status="applied", reason="test",
        ),
        QuotaChange.objects.create(
            quota_plan=quota_plan, kind="adjustment", period=quarter, territory=leaf, territory_code="W-1",
            component=Component.NEW_BUSINESS, old_amount=Decimal(1), new_amount=Decimal(2), actor=admin_user,
        ),
        ActivityGoal.objects.create(quota_plan=quota_plan, territory=leaf, metric="calls_per_week", target=4),
    ]  # fmt: skip
    from integrations.models import ImportJob, WebhookDelivery, WebhookSubscription

    hook = WebhookSubscription.objects.create(
        owner=admin_user, url="https://crm.example.com/hook", events=["plan.published"], secret="s" * 20
    )
    integration_rows = [
        hook,
        WebhookDelivery.objects.create(subscription=hook, event="plan.published", payload={"id": "x"}),
        ImportJob.objects.create(kind="accounts", file_name="a.csv", created_by=admin_user),
    ]
    group = Group.objects.create(name="Planners")
    rows = [
        rep_user, token, postal, county, account, rep, plan, leaf, membership, rule,
        RulePostalCode.objects.filter(rule=rule).first(), account_assignment, unit_assignment, job, change,
        quarter, quota_plan, quota, booking, group, comment, *quota_rows, *integration_rows,
        *_analytics_rows(plan),
    ]  # fmt: skip
    return {type(row): row for row in rows} | {"state": state}


def _analytics_rows(plan) -> list:
    from django.utils import timezone

    from analytics.models import PlanBalanceSnapshot, ReadCache, WarningCheck, WarningSign

    now = timezone.now()
    return [
        PlanBalanceSnapshot.objects.create(plan=plan, taken_at=now, source="publish", figures={}),
        WarningCheck.objects.create(trigger="manual"),
        WarningSign.objects.create(
            kind="unassigned_accounts",
            key="admin-test",
            plan=plan,
            title="3 accounts",
            first_seen=now,
            last_seen=now,
        ),
        ReadCache.objects.create(key="credits:admin-test", snapshot="1:1:", value=[]),
        BaseTile.objects.create(z=4, x=3, y=6, data=b"\x1a\x00"),
    ]


REGISTERED = sorted(admin.site._registry, key=model_label)


def test_every_project_model_is_registered():
    missing = [
        model_label(model)
        for label in PROJECT_APPS
        for model in apps.get_app_config(label).get_models()
        if model not in admin.site._registry
    ]
    assert missing == []


@pytest.mark.parametrize("model", REGISTERED, ids=model_label)
def test_changelist_add_and_change_pages_render(admin_client, objects, model):
    row = objects[model]  # a KeyError here: add a row of the new model to the `objects` fixture

    changelist = admin_client.get(admin_url(model, "changelist"))
    assert changelist.status_code == 200
    assert_offline(changelist.content.decode())

    add = admin_client.get(admin_url(model, "add"))
    if model_label(model) in NO_ADD_PAGE:
        assert add.status_code == 403
    else:
        assert add.status_code == 200
        assert_offline(add.content.decode())

    change = admin_client.get(admin_url(model, "change", row.pk))
    assert change.status_code == 200
    assert_offline(change.content.decode())


@pytest.mark.parametrize("model", REGISTERED, ids=model_label)
def test_changelist_search_runs(admin_client, objects, model):
    # search_fields naming a wrong lookup only fail when someone searches.
    response = admin_client.get(admin_url(model, "changelist"), {"q": "x"})
    assert response.status_code == 200


# --- geography and maps -------------------------------------------------------------------------


def test_geounit_changelist_never_selects_the_geometry(admin_client, objects):
    county = objects[GeoUnit]
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(admin_url(GeoUnit, "changelist"), {"level__exact": "county"})
    assert response.status_code == 200
    assert county.name in response.content.decode()
    assert "Colorado" in response.content.decode()  # the parent, through the join
    unit_queries = [q["sql"] for q in queries.captured_queries if "territories_geounit" in q["sql"]]
    assert unit_queries
    for sql in unit_queries:
        assert '"geom"' not in sql
        assert '"geom_simplified"' not in sql


def test_geounit_change_page_maps_the_boundary_with_vendored_openlayers(admin_client, objects):
    county = objects[GeoUnit]
    html = admin_client.get(admin_url(GeoUnit, "change", county.pk)).content.decode()
    assert "/static/vendor/ol/ol.js" in html
    assert "/static/vendor/ol/ol.css" in html
    assert "/static/js/admin_map.js" in html
    assert "new TesseraMapWidget(" in html
    assert reverse("admin:territories_geounit_base_states") in html
    # The boundary goes to the map as GeoJSON in web mercator (Django's widget SRID).
    geom = re.search(r'<textarea id="id_geom"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    assert json.loads(geom.replace("&quot;", '"'))["type"] == "MultiPolygon"
    assert "vertices" in html


@override_settings(TESSERA_BASEMAP_URL="http://127.0.0.1:8089/tiles/{z}/{x}/{y}.png")
def test_basemap_setting_adds_a_raster_layer(admin_client, objects):
    html = admin_client.get(admin_url(Account, "change", objects[Account].pk)).content.decode()
    assert "http://127.0.0.1:8089/tiles/{z}/{x}/{y}.png" in html


def test_without_basemap_setting_no_raster_url_reaches_the_page(admin_client, objects):
    html = admin_client.get(admin_url(Account, "change", objects[Account].pk)).content.decode()
    config = re.search(r'<script id="id_location_tessera_map" type="application/json">(.*?)</script>', html)
    assert config is not None
    assert json.loads(config.group(1))["basemap_url"] == ""


def test_widget_media_is_local_only():
    media = OfflineMapWidget().media
    paths = [*media._js, *[p for group in media._css.values() for p in group]]
    assert "vendor/ol/ol.js" in paths
    assert all("//" not in p for p in paths), paths


def test_base_states_geojson_serves_state_outlines_to_staff(admin_client, objects):
    url = reverse("admin:territories_geounit_base_states")
    response = admin_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/geo+json"
    data = json.loads(response.content)
    assert data["type"] == "FeatureCollection"
    assert [f["properties"]["code"] for f in data["features"]] == ["08"]  # states only, no county
    assert data["features"][0]["geometry"]["type"] == "MultiPolygon"

    again = admin_client.get(url, HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304

    state = objects["state"]
    state.name = "Colorado (edited)"
    # A real outline has hundreds of vertices; Django only gzips bodies that come out shorter.
    state.geom_simplified = MultiPolygon(Point(-105.5, 39).buffer(3, quadsegs=64), srid=4326)
    state.save()
    changed = admin_client.get(url, HTTP_IF_NONE_MATCH=response["ETag"])
    assert changed.status_code == 200
    assert "Colorado (edited)" in changed.content.decode()
    assert len(json.loads(changed.content)["features"][0]["geometry"]["coordinates"][0][0]) == 257

    zipped = admin_client.get(url, HTTP_ACCEPT_ENCODING="gzip")
    assert zipped["Content-Encoding"] == "gzip"
    # Compression weakens the ETag; a revalidation with the weak one still gets a 304.
    assert admin_client.get(url, HTTP_IF_NONE_MATCH=zipped["ETag"]).status_code == 304

    # A reload that bypasses save() (bulk_update) leaves `updated` alone; the outline still refreshes.
    GeoUnit.objects.filter(pk=state.pk).update(geom_simplified=square(-109, 37, 7), updated=state.updated)
    reloaded = admin_client.get(url, HTTP_IF_NONE_MATCH=changed["ETag"])
    assert reloaded.status_code == 200
    assert len(json.loads(reloaded.content)["features"][0]["geometry"]["coordinates"][0][0]) == 5


def test_base_states_geojson_is_staff_only(client, objects):
    url = reverse("admin:territories_geounit_base_states")
    assert client.get(url).status_code == 302
    client.force_login(User.objects.get(username="rep.one"))
    response = client.get(url)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_geounit_add_computes_display_geometry_centroid_and_area(admin_client, objects):
    shape = square(-105, 40, 1.0)
    response = admin_client.post(
        admin_url(GeoUnit, "add"),
        {
            "level": UnitLevel.CUSTOM,
            "code": "C-1",
            "name": "Front Range",
            "parent": objects["state"].pk,
            "geom": shape.transform(3857, clone=True).json,
            "attributes": "{}",
            "adjacent": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    unit = GeoUnit.objects.get(level=UnitLevel.CUSTOM, code="C-1")
    assert unit.geom.srid == 4326
    assert unit.geom.equals_exact(shape, tolerance=1e-6)
    assert unit.geom_simplified.num_points >= 5
    assert unit.geom.contains(unit.centroid)
    # 1° × 1° at 40–41°N: 111.2 km × ~84.9 km.
    assert unit.area_sq_km == pytest.approx(9440, rel=0.02)


def test_account_location_is_edited_through_the_map_field(admin_client, objects):
    account = objects[Account]
    moved = Point(-104.5, 39.5, srid=4326)
    data = {
        "external_id": account.external_id,
        "name": account.name,
        "status": account.status,
        "parent": "",
        "street": "",
        "city": "Aurora",
        "state": "CO",
        "postal_code": "80010",
        "country": "US",
        "location": moved.transform(3857, clone=True).json,
        "geocode_quality": "exact",
        "industry": "",
        "segment": "",
        "employees": "",
        "revenue": "0",
        "potential": "0",
        "workload_hours": "0",
        "lead_source": "",
        "attributes": "{}",
    }
    response = admin_client.post(admin_url(Account, "change", account.pk), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.location.srid == 4326
    assert (account.location.x, account.location.y) == (pytest.approx(-104.5), pytest.approx(39.5))


# --- big lists ---------------------------------------------------------------------------------


def _add_more_rows(objects, count: int) -> None:
    plan, leaf, county = objects[Plan], objects[Territory], objects[GeoUnit]
    for i in range(count):
        account = Account.objects.create(
            external_id=f"ADM-ACC-X{i}", name=f"Extra {i}", parent=objects[Account]
        )
        AccountAssignment.objects.create(
            plan=plan, account=account, territory=leaf, source=AssignmentSource.MANUAL
        )
        unit = geo_unit(UnitLevel.ZIP, f"8{i:04d}", f"ZIP {i}", square(-105, 39.6, 0.01), parent=county)
        UnitAssignment.objects.create(plan=plan, unit=unit, territory=leaf)
        Change.objects.create(
            plan=plan,
            kind=ChangeKind.UNIT_MOVED,
            unit=unit,
            account=account,
            territory_to=leaf,
            actor=objects[User],
        )
        Booking.objects.create(
            external_id=f"ADM-OPP-X{i}",
            account=account,
            amount=1,
            booked_on=dt.date(2041, 1, 2),
            component=Component.RENEWAL,
            rep=objects[Rep],
        )


@pytest.mark.parametrize(
    "model", [AccountAssignment, UnitAssignment, Change, Booking, Quota, Territory, GeoUnit], ids=model_label
)
def test_changelist_query_count_does_not_grow_with_rows(admin_client, objects, model):
    url = admin_url(model, "changelist")
    admin_client.get(url)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200
    _add_more_rows(objects, 5)
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(url).status_code == 200
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_unit_foreign_keys_never_load_unit_geometry(admin_client, objects):
    _add_more_rows(objects, 3)
    for model in (UnitAssignment, Change):
        with CaptureQueriesContext(connection) as queries:
            admin_client.get(admin_url(model, "changelist"))
        assert not [q for q in queries.captured_queries if '"geom"' in q["sql"]], model


def test_plan_and_rule_show_counts_not_inlines(admin_client, objects):
    plans = admin_client.get(admin_url(Plan, "changelist")).content.decode()
    territories = admin_url(Territory, "changelist")
    assert f'<a href="{territories}?plan__id__exact={objects[Plan].pk}">2</a>' in plans

    rule = objects[AssignmentRule]
    page = admin_client.get(admin_url(AssignmentRule, "change", rule.pk)).content.decode()
    codes = admin_url(RulePostalCode, "changelist")
    assert f'<a href="{codes}?rule__id__exact={rule.pk}">3</a>' in page
    assert 'name="postal_codes-TOTAL_FORMS"' not in page


def test_territory_change_page_has_the_membership_inline(admin_client, objects):
    page = admin_client.get(admin_url(Territory, "change", objects[Territory].pk)).content.decode()
    assert 'name="memberships-TOTAL_FORMS" value="1"' in page
    assert "Rita Rep" in page


def test_rule_form_rejects_conditions_the_resolver_cannot_read(admin_client, objects):
    plan, leaf = objects[Plan], objects[Territory]
    response = admin_client.post(
        admin_url(AssignmentRule, "add"),
        {
            "plan": plan.pk,
            "territory": leaf.pk,
            "name": "Broken",
            "priority": 5,
            "conditions": json.dumps([{"field": "industry", "op": "resembles", "value": "x"}]),
            "active": "on",
        },
    )
    assert response.status_code == 200
    assert "condition 1" in response.content.decode()
    assert not AssignmentRule.objects.filter(name="Broken").exists()


def test_user_admin_shows_and_filters_role(admin_client, objects):
    page = admin_client.get(admin_url(User, "changelist"), {"role__exact": Role.REP}).content.decode()
    assert "rep.one" in page
    assert "column-role" in page
    change = admin_client.get(admin_url(User, "change", objects[User].pk)).content.decode()
    assert 'name="role"' in change


# --- read-only admins ---------------------------------------------------------------------------


def test_change_log_cannot_be_added_edited_or_deleted(admin_client, objects, admin_user, rf):
    change = objects[Change]
    model_admin = admin.site._registry[Change]
    request = rf.get("/")
    request.user = admin_user
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, change)
    assert not model_admin.has_delete_permission(request, change)

    assert admin_client.get(admin_url(Change, "add")).status_code == 403
    assert admin_client.get(admin_url(Change, "delete", change.pk)).status_code == 403
    view = admin_client.get(admin_url(Change, "change", change.pk))
    assert view.status_code == 200
    assert 'name="_save"' not in view.content.decode()
    assert (
        admin_client.post(admin_url(Change, "change", change.pk), {"kind": "plan_created"}).status_code == 403
    )
    changelist = admin_client.get(admin_url(Change, "changelist")).content.decode()
    assert "delete_selected" not in changelist
    change.refresh_from_db()
    assert change.kind == ChangeKind.ACCOUNT_MOVED


def test_balance_job_shows_parameters_and_result_read_only(admin_client, objects):
    job = objects[BalanceJob]
    page = admin_client.get(admin_url(BalanceJob, "change", job.pk)).content.decode()
    assert "&quot;tolerance&quot;: 0.05" in page
    assert "&quot;max_deviation&quot;: 0.031" in page
    assert 'name="parameters"' not in page
    assert 'name="result"' not in page
    assert 'name="cancel_requested"' in page


# --- API tokens ---------------------------------------------------------------------------------


def test_token_pages_never_show_the_key_hash(admin_client, objects):
    token = objects[ApiToken]
    pages = [
        admin_client.get(admin_url(ApiToken, "changelist")),
        admin_client.get(admin_url(ApiToken, "change", token.pk)),
        admin_client.get(admin_url(ApiToken, "add")),
    ]
    for response in pages:
        html = response.content.decode()
        assert token.key_hash not in html
        assert "key_hash" not in html
        assert TOKEN_KEY not in html
    assert token.prefix in pages[0].content.decode()
    # Nor can the hash be searched for (a match would confirm a guessed key's hash).
    search = admin_client.get(admin_url(ApiToken, "changelist"), {"q": token.key_hash}).content.decode()
    assert "0 results" in search


def test_adding_a_token_shows_the_key_once_and_stores_its_hash(admin_client, objects):
    response = admin_client.post(
        admin_url(ApiToken, "add"),
        {"name": "New CRM", "user": objects[User].pk, "scopes": [TokenScope.READ, TokenScope.WRITE]},
    )
    assert response.status_code == 200
    html = response.content.decode()
    key = re.search(r'id="token-key"[^>]*value="([^"]+)"', html).group(1)
    token = ApiToken.objects.get(name="New CRM")
    assert token.key_hash == ApiToken.hash_key(key)
    assert token.prefix == key[:12]
    assert token.scopes == ["read", "write"]
    assert token.key_hash not in html
    assert key not in admin_client.get(admin_url(ApiToken, "change", token.pk)).content.decode()


def test_revoke_action(admin_client, objects):
    token = objects[ApiToken]
    response = admin_client.post(
        admin_url(ApiToken, "changelist"), {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    assert "1 token revoked." in response.content.decode()
    token.refresh_from_db()
    assert token.revoked is True


# --- vendored files ---------------------------------------------------------------------------


def test_vendored_openlayers_matches_the_pin():
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]["ol"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin an exact version"
    vendored = (REPO / "static/vendor/ol/VERSION").read_text().strip()
    assert vendored == pinned
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/ol"]["version"] == pinned
    readme = (REPO / "static/vendor/README.md").read_text()
    assert f"| OpenLayers | {pinned} |" in readme
    assert "BSD 2-Clause" in (REPO / "static/vendor/ol/LICENSE.md").read_text()
    assert "sourceMappingURL" not in (REPO / "static/vendor/ol/ol.js").read_text()[-500:]


def test_collectstatic_with_the_manifest_storage(tmp_path):
    # Production uses a manifest storage, which fails on a JS/CSS file naming a missing file.
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=storages):
        call_command("collectstatic", "--noinput", verbosity=0)
    manifest = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]
    assert "vendor/ol/ol.js" in manifest
    assert "js/admin_map.js" in manifest


def test_default_geometry_fields_of_the_admin_use_the_offline_widget(rf, admin_user):
    geometry_admins = [
        (Account, "location"),
        (Rep, "home_location"),
        (PostalCode, "location"),
        (GeoUnit, "geom"),
    ]
    request = rf.get("/")
    request.user = admin_user
    for model, field in geometry_admins:
        form = admin.site._registry[model].get_form(request)()
        assert isinstance(form.fields[field].widget, OfflineMapWidget), model


def test_map_widget_renders_geojson_for_the_js():
    widget = OfflineMapWidget()
    html = widget.render("location", Point(-104.99, 39.75, srid=4326), attrs={"id": "id_location"})
    serialized = re.search(r"<textarea[^>]*>(.*?)</textarea>", html, re.S).group(1)
    point = GEOSGeometry(serialized.replace("&quot;", '"'))
    # Django's widget works in web mercator: x about -11.69e6 m for 104.99°W.
    assert point.coords[0] == pytest.approx(-11_687_321, rel=1e-4)


def test_user_add_form_sets_the_role(admin_client):
    response = admin_client.post(
        admin_url(User, "add"),
        {
            "username": "new.planner",
            "usable_password": "true",
            "password1": "a-long-enough-passphrase",
            "password2": "a-long-enough-passphrase",
            "role": Role.PLANNER,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(username="new.planner").role == Role.PLANNER

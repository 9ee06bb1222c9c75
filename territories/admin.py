"""Admin for geography, plans, territories, assignments, rules, balance jobs and the change log.

The admin is a back office for inspection and repair. Planning workflows (status transitions,
moves, balancing) go through the services, which bump the plan version and record Changes; fields
those workflows own are read-only here."""

from __future__ import annotations

import json

import shapely
from django import forms
from django.contrib import admin
from django.contrib.gis.admin import GISModelAdmin
from django.contrib.gis.db.models.functions import AsGeoJSON, NumPoints
from django.contrib.gis.geos import GEOSGeometry
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, F, Max, Sum
from django.db.models.functions import Length
from django.http import HttpResponse
from django.urls import path, reverse
from django.utils.cache import get_conditional_response, quote_etag
from django.utils.html import format_html
from django.views.decorators.gzip import gzip_page

from tessera_common.widgets import OfflineMapWidget

from . import geodata
from . import rules as rule_conditions
from .choices import ChangeKind, PlanStatus, UnitLevel
from .models import (
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

# Columns a list never needs: a county's full boundary is tens of kilobytes, a state's far more.
GEOUNIT_GEOMETRY_FIELDS = ("geom", "geom_simplified", "centroid")
# Equal-area (WGS 84 / NSIDC EASE-Grid 2.0 Global) for area_sq_km: valid for Alaska and Hawaii too,
# where a CONUS Albers projection would be off.
EQUAL_AREA_SRID = 6933
# 4 decimals of a degree is ~11 m: finer than a pixel at any zoom the admin map shows outlines at.
BASE_STATES_PRECISION = 4
BASE_STATES_CACHE_SECONDS = 24 * 3600


def _deferred_unit_geometry(prefix: str) -> list[str]:
    return [f"{prefix}__{name}" for name in GEOUNIT_GEOMETRY_FIELDS]


def without_unit_geometry(queryset, related):
    """`queryset` joined to `related` (which includes "unit"), leaving out the unit's geometry."""
    # The changelist ignores list_select_related once a queryset has any select_related, so the
    # whole list is joined here.
    return queryset.select_related(*related).defer(*_deferred_unit_geometry("unit"))


def pretty_json(value) -> str:
    return format_html(
        "<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    )


def changelist_link(model, label, **filters) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


# --- geography ---------------------------------------------------------------------------------


class GeoUnitForm(forms.ModelForm):
    class Meta:
        model = GeoUnit
        fields = ("level", "code", "name", "parent", "geom", "attributes", "adjacent")


@admin.register(GeoUnit)
class GeoUnitAdmin(GISModelAdmin):
    """Lists defer every geometry column; the change page draws the full boundary on an editable
    map. The display geometry, centroid and area follow from it on save."""

    form = GeoUnitForm
    gis_widget = OfflineMapWidget
    list_display = ("code", "name", "level", "parent", "area")
    list_filter = ("level",)
    search_fields = ("code", "name")
    list_select_related = ("parent",)
    raw_id_fields = ("parent", "adjacent")
    readonly_fields = ("display_geometry", "centroid_display", "area", "created", "updated")
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("level", "code", "name", "parent")}),
        ("Boundary", {"fields": ("geom", "display_geometry", "centroid_display", "area")}),
        ("Attributes", {"fields": ("attributes", "adjacent")}),
        ("Record", {"fields": ("created", "updated")}),
    )

    def get_queryset(self, request):
        # The changelist, autocomplete and delete pages all go through here; the change page loads
        # the geometry back in get_object.
        return (
            super()
            .get_queryset(request)
            # All of list_select_related: the changelist skips it when a select_related is present.
            .select_related(*self.list_select_related)
            .defer(*GEOUNIT_GEOMETRY_FIELDS, *_deferred_unit_geometry("parent"))
        )

    def get_object(self, request, object_id, from_field=None):
        unit = super().get_object(request, object_id, from_field)
        if unit is not None:
            unit.refresh_from_db(fields=GEOUNIT_GEOMETRY_FIELDS)
        return unit

    @admin.display(description="display geometry")
    def display_geometry(self, obj):
        if obj.pk is None or obj.geom_simplified is None:
            return "Computed from the boundary on save."
        return f"{obj.geom_simplified.num_points:,} vertices (boundary: {obj.geom.num_points:,})"

    @admin.display(description="area (km²)", ordering="area_sq_km")
    def area(self, obj):
        return f"{obj.area_sq_km:,.1f}" if obj.pk is not None else "Computed from the boundary on save."

    @admin.display(description="centroid")
    def centroid_display(self, obj):
        if obj.pk is None or obj.centroid is None:
            return "Computed from the boundary on save."
        return f"{obj.centroid.y:.5f}, {obj.centroid.x:.5f}"

    def save_model(self, request, obj, form, change):
        if not change or "geom" in form.changed_data:
            derive_unit_geometry(obj)
        super().save_model(request, obj, form, change)

    def get_urls(self):
        states = path(
            "base-states.geojson",
            # Any staff user: the outlines are the base layer of every admin map (accounts, reps),
            # not only of GeoUnit pages.
            self.admin_site.admin_view(base_states_geojson),
            name="territories_geounit_base_states",
        )
        return [states, *super().get_urls()]


def derive_unit_geometry(unit: GeoUnit) -> None:
    """Fill the display geometry, centroid and area of a unit from its boundary, as the geography
    loader does (same simplification)."""
    boundary = shapely.from_wkb(bytes(unit.geom.wkb))
    simplified = geodata.simplify_for_display(boundary)
    unit.geom_simplified = GEOSGeometry(memoryview(shapely.to_wkb(simplified)), srid=4326)
    # Point on surface, not the centroid: it lies inside concave and multi-part units too.
    unit.centroid = unit.geom.point_on_surface
    unit.area_sq_km = unit.geom.transform(EQUAL_AREA_SRID, clone=True).area / 1e6


# 56 states and territories at the loader's display tolerance come to ~250 kB, ~80 kB gzipped.
@gzip_page
def base_states_geojson(request):
    """State outlines (display geometry) as a GeoJSON FeatureCollection, the admin maps' base layer.

    Built from the GeoUnit table rather than shipped as a static file, so it always matches the
    loaded geography; cached under a fingerprint of the state rows, and revalidated by ETag."""
    # The vertex total catches a reload by bulk_update, which leaves `updated` as it was.
    fingerprint = GeoUnit.objects.filter(level=UnitLevel.STATE).aggregate(
        count=Count("id"),
        last_id=Max("id"),
        last_updated=Max("updated"),
        vertices=Sum(NumPoints("geom_simplified")),
    )
    version = "{count}-{last_id}-{vertices}-{stamp}".format(
        count=fingerprint["count"],
        last_id=fingerprint["last_id"] or 0,
        vertices=fingerprint["vertices"] or 0,
        stamp=fingerprint["last_updated"].timestamp() if fingerprint["last_updated"] else 0,
    )
    etag = quote_etag(f"states-{version}")
    not_modified = get_conditional_response(request, etag=etag)
    if not_modified is not None:
        return not_modified
    cache_key = f"tessera:admin:base-states:{version}"
    body = cache.get(cache_key)
    if body is None:
        body = _states_feature_collection()
        cache.set(cache_key, body, BASE_STATES_CACHE_SECONDS)
    response = HttpResponse(body, content_type="application/geo+json")
    response["ETag"] = etag
    # Staff-only data: private; no-cache makes the browser revalidate, a cheap 304 when unchanged.
    response["Cache-Control"] = "private, no-cache"
    return response


def _states_feature_collection() -> bytes:
    rows = (
        GeoUnit.objects.filter(level=UnitLevel.STATE)
        .order_by("code")
        .annotate(shape=AsGeoJSON("geom_simplified", precision=BASE_STATES_PRECISION))
        .values_list("code", "name", "shape")
    )
    # The geometry is already GeoJSON text from PostGIS: spliced in rather than parsed and re-dumped.
    features = ",".join(
        '{"type":"Feature","properties":'
        + json.dumps({"code": code, "name": name})
        + ',"geometry":'
        + shape
        + "}"
        for code, name, shape in rows
    )
    return ('{"type":"FeatureCollection","features":[' + features + "]}").encode()


# --- plans and territories ---------------------------------------------------------------------


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "status",
        "effective_from",
        "effective_to",
        "version",
        "territory_count",
        "owner",
        "updated",
    )
    list_filter = ("status",)
    search_fields = ("name", "description")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner", "based_on")
    # Status moves through plan_transition/plan_publish, which check the path and record a Change;
    # version is the optimistic lock those services bump.
    readonly_fields = (
        "status",
        "version",
        "published_at",
        "territory_count",
        "metrics_display",
        "created",
        "updated",
    )
    fields = (
        "name",
        "description",
        "status",
        "effective_from",
        "effective_to",
        "based_on",
        "owner",
        "version",
        "published_at",
        "territory_count",
        "metrics_display",
        "created",
        "updated",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(territory_total=Count("territories"))

    @admin.display(description="territories", ordering="territory_total")
    def territory_count(self, obj):
        total = getattr(obj, "territory_total", None)
        if total is None:
            total = obj.territories.count()
        if obj.pk is None:
            return "—"
        return changelist_link(Territory, total, plan__id__exact=obj.pk)

    @admin.display(description="metrics")
    def metrics_display(self, obj):
        return pretty_json(obj.metrics)


class TerritoryMembershipInline(admin.TabularInline):
    model = TerritoryMembership
    fields = ("rep", "role", "share")
    autocomplete_fields = ("rep",)
    extra = 0


class PlanContentAuditMixin:
    """Edits of a plan's contents made in the admin follow the same rules as the services: an
    archived plan is read-only, and every save or delete bumps the plan version (so open planner
    sessions see a conflict rather than overwrite) and leaves a Change naming the admin user."""

    change_kind = ChangeKind.TERRITORY_UPDATED

    @staticmethod
    def _plan_of(obj):
        if isinstance(obj, RulePostalCode):
            return obj.rule.plan
        if hasattr(obj, "plan_id"):
            return obj.plan
        return obj.territory.plan if hasattr(obj, "territory_id") else None

    def has_change_permission(self, request, obj=None):
        plan = self._plan_of(obj) if obj is not None and obj.pk else None
        if plan is not None and plan.status == PlanStatus.ARCHIVED:
            return False
        return super().has_change_permission(request, obj)

    has_delete_permission = has_change_permission

    def _audit(self, request, obj, action: str, fields=()):
        plan = self._plan_of(obj)
        if plan is None:
            return
        Plan.objects.filter(pk=plan.pk).update(version=F("version") + 1)
        plan.refresh_from_db(fields=["version"])
        Change.objects.create(
            plan=plan,
            actor=request.user,
            kind=self.change_kind,
            account_id=getattr(obj, "account_id", None),
            unit_id=getattr(obj, "unit_id", None) if obj._meta.model_name == "unitassignment" else None,
            territory_to_id=obj.pk if isinstance(obj, Territory) else getattr(obj, "territory_id", None),
            plan_version=plan.version,
            payload={
                "via": "admin",
                "action": action,
                "model": obj._meta.model_name,
                "object": str(obj),
                "fields": sorted(fields),
            },
        )

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            self._audit(request, obj, "changed" if change else "added", form.changed_data)

    def delete_model(self, request, obj):
        with transaction.atomic():
            self._audit(request, obj, "deleted")
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self._audit(request, obj, "deleted")
            super().delete_queryset(request, queryset)


@admin.register(Territory)
class TerritoryAdmin(PlanContentAuditMixin, admin.ModelAdmin):
    change_kind = ChangeKind.TERRITORY_UPDATED
    list_display = ("code", "name", "plan", "level_name", "parent", "manager", "color_swatch")
    list_filter = ("plan", "level_name")
    search_fields = ("code", "name")
    list_select_related = ("plan", "parent", "manager")
    autocomplete_fields = ("plan", "parent", "manager")
    readonly_fields = ("created", "updated")
    inlines = (TerritoryMembershipInline,)

    @admin.display(description="color")
    def color_swatch(self, obj):
        return format_html(
            '<span style="display:inline-block;width:1em;height:1em;background:{};border:1px solid #999">'
            "</span> {}",
            obj.color,
            obj.color,
        )


@admin.register(TerritoryMembership)
class TerritoryMembershipAdmin(PlanContentAuditMixin, admin.ModelAdmin):
    change_kind = ChangeKind.MEMBERSHIP_CHANGED
    list_display = ("rep", "territory", "role", "share")
    list_filter = ("role", "territory__plan")
    search_fields = ("rep__name", "rep__external_id", "territory__code", "territory__name")
    list_select_related = ("rep", "territory")
    autocomplete_fields = ("territory", "rep")
    readonly_fields = ("created", "updated")


# --- rules and assignments ---------------------------------------------------------------------


class AssignmentRuleForm(forms.ModelForm):
    class Meta:
        model = AssignmentRule
        fields = ("plan", "territory", "name", "priority", "conditions", "active")

    def clean_conditions(self):
        conditions = self.cleaned_data["conditions"]
        try:
            rule_conditions.parse_conditions(conditions)
        except rule_conditions.RuleConditionError as exc:
            raise forms.ValidationError(str(exc)) from None
        return conditions

    def clean(self):
        cleaned = super().clean()
        plan, territory = cleaned.get("plan"), cleaned.get("territory")
        if plan and territory and territory.plan_id != plan.pk:
            self.add_error("territory", "This territory belongs to another plan.")
        return cleaned


@admin.register(AssignmentRule)
class AssignmentRuleAdmin(PlanContentAuditMixin, admin.ModelAdmin):
    """A rule's postal-code list runs to thousands of rows: shown as a count linking to the rows,
    never as an inline."""

    form = AssignmentRuleForm
    change_kind = ChangeKind.RULE_CHANGED
    list_display = ("name", "plan", "territory", "priority", "active", "postal_code_count")
    list_filter = ("active", "plan")
    search_fields = ("name", "territory__code", "territory__name")
    list_select_related = ("plan", "territory")
    autocomplete_fields = ("plan", "territory")
    readonly_fields = ("postal_code_count", "created", "updated")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(postal_code_total=Count("postal_codes"))

    @admin.display(description="postal codes", ordering="postal_code_total")
    def postal_code_count(self, obj):
        if obj.pk is None:
            return "—"
        total = getattr(obj, "postal_code_total", None)
        if total is None:
            total = obj.postal_codes.count()
        return changelist_link(RulePostalCode, f"{total:,}", rule__id__exact=obj.pk)


@admin.register(RulePostalCode)
class RulePostalCodeAdmin(PlanContentAuditMixin, admin.ModelAdmin):
    change_kind = ChangeKind.RULE_CHANGED
    list_display = ("postal_code", "rule")
    search_fields = ("postal_code", "rule__name")
    list_select_related = ("rule",)
    raw_id_fields = ("rule",)
    show_full_result_count = False


@admin.register(AccountAssignment)
class AccountAssignmentAdmin(PlanContentAuditMixin, admin.ModelAdmin):
    change_kind = ChangeKind.ACCOUNT_MOVED
    list_display = ("account", "plan", "territory", "role", "source", "locked", "updated")
    list_filter = ("plan", "source", "role", "locked")
    search_fields = ("account__name", "account__external_id", "territory__code")
    list_select_related = ("account", "plan", "territory")
    raw_id_fields = ("account", "rule", "unit")
    autocomplete_fields = ("plan", "territory")
    readonly_fields = ("created", "updated")
    show_full_result_count = False


@admin.register(UnitAssignment)
class UnitAssignmentAdmin(PlanContentAuditMixin, admin.ModelAdmin):
    change_kind = ChangeKind.UNIT_MOVED
    list_display = ("unit", "plan", "territory", "source", "locked", "updated")
    list_filter = ("plan", "source", "locked", "unit__level")
    search_fields = ("unit__code", "unit__name", "territory__code")
    list_select_related = ("unit", "plan", "territory")
    autocomplete_fields = ("plan", "territory", "unit")
    readonly_fields = ("created", "updated")
    show_full_result_count = False

    def get_queryset(self, request):
        return without_unit_geometry(super().get_queryset(request), self.list_select_related)


# --- jobs and the change log -------------------------------------------------------------------


@admin.register(BalanceJob)
class BalanceJobAdmin(admin.ModelAdmin):
    """Jobs are created by the balance service and written by the worker: everything is read-only
    here except asking a running job to stop."""

    list_display = (
        "id",
        "plan",
        "status",
        "progress",
        "created_by",
        "created",
        "started_at",
        "finished_at",
        "produced_plan",
    )
    list_filter = ("status",)
    search_fields = ("plan__name", "celery_task_id")
    list_select_related = ("plan", "created_by", "produced_plan")
    fields = (
        "plan",
        "created_by",
        "status",
        "progress",
        "message",
        "cancel_requested",
        "parameters_display",
        "result_display",
        "error",
        "produced_plan",
        "celery_task_id",
        "created",
        "started_at",
        "finished_at",
    )
    readonly_fields = tuple(name for name in fields if name != "cancel_requested")

    def has_add_permission(self, request):
        return False

    @admin.display(description="parameters")
    def parameters_display(self, obj):
        return pretty_json(obj.parameters)

    @admin.display(description="result")
    def result_display(self, obj):
        return pretty_json(obj.result)


@admin.register(Change)
class ChangeAdmin(admin.ModelAdmin):
    """The append-only audit log: viewable, never added, edited or deleted here (the database
    refuses updates anyway). An undo is a new Change made by the services."""

    list_display = (
        "at",
        "kind",
        "plan",
        "plan_version",
        "actor",
        "account",
        "unit",
        "territory_from",
        "territory_to",
    )
    list_filter = ("kind", "plan")
    search_fields = ("account__name", "account__external_id", "unit__code", "territory_to__code")
    list_select_related = ("plan", "actor", "account", "unit", "territory_from", "territory_to")
    date_hierarchy = "at"
    fields = (
        "at",
        "plan",
        "plan_version",
        "kind",
        "batch",
        "actor",
        "account",
        "unit",
        "territory_from",
        "territory_to",
        "reverts",
        "payload_display",
    )
    readonly_fields = fields
    show_full_result_count = False

    def get_queryset(self, request):
        return without_unit_geometry(super().get_queryset(request), self.list_select_related)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="payload")
    def payload_display(self, obj):
        return pretty_json(obj.payload)


@admin.register(PlanComment)
class PlanCommentAdmin(admin.ModelAdmin):
    list_display = ("plan", "author", "territory", "plan_status", "created")
    list_filter = ("plan_status",)
    search_fields = ("body", "plan__name", "author__username")
    raw_id_fields = ("plan", "author", "territory")
    list_select_related = ("plan", "author", "territory")


@admin.register(BaseTile)
class BaseTileAdmin(admin.ModelAdmin):
    """Encoded state and county tiles kept for every server process; read-only. Deleting them is
    safe (the next request draws them again)."""

    list_display = ("__str__", "z", "x", "y", "size", "created")
    list_filter = ("z",)
    search_fields = ("=z",)
    exclude = ("data",)
    readonly_fields = ("z", "x", "y", "size", "created")

    @admin.display(description="bytes", ordering="data_bytes")
    def size(self, obj: BaseTile) -> int:
        return obj.data_bytes

    def get_queryset(self, request):
        # The list shows sizes, not the tiles: the bytes are measured in the database.
        return super().get_queryset(request).defer("data").annotate(data_bytes=Length("data"))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

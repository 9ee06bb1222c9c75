"""Admin for fiscal periods, quota plans, quotas and bookings."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from .models import (
    ActivityGoal,
    Booking,
    FiscalPeriod,
    Quota,
    QuotaAdjustment,
    QuotaChange,
    QuotaPlan,
    QuotaRelief,
)


@admin.register(FiscalPeriod)
class FiscalPeriodAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "start", "end", "parent")
    list_filter = ("kind",)
    search_fields = ("name",)
    list_select_related = ("parent",)
    autocomplete_fields = ("parent",)
    readonly_fields = ("created", "updated")


@admin.register(QuotaPlan)
class QuotaPlanAdmin(admin.ModelAdmin):
    list_display = ("name", "territory_plan", "fiscal_year", "status", "quota_count", "updated")
    list_filter = ("status",)
    search_fields = ("name", "territory_plan__name")
    list_select_related = ("territory_plan", "fiscal_year")
    autocomplete_fields = ("territory_plan", "fiscal_year")
    readonly_fields = ("quota_count", "created", "updated")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(quota_total=Count("quotas"))

    @admin.display(description="quotas", ordering="quota_total")
    def quota_count(self, obj):
        if obj.pk is None:
            return "—"
        total = getattr(obj, "quota_total", None)
        return obj.quotas.count() if total is None else total


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ("quota_plan", "period", "territory", "rep", "component", "amount")
    list_filter = ("component", "period__kind", "quota_plan")
    search_fields = ("territory__code", "territory__name", "rep__name", "period__name")
    list_select_related = ("quota_plan", "period", "territory", "rep")
    autocomplete_fields = ("quota_plan", "period", "territory", "rep")
    readonly_fields = ("created", "updated")
    show_full_result_count = False


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = ("external_id", "account", "amount", "component", "booked_on", "rep")
    list_filter = ("component",)
    date_hierarchy = "booked_on"
    search_fields = ("external_id", "account__name", "account__external_id")
    list_select_related = ("account", "rep")
    # Accounts run to 100k rows: a raw id, not a select box or a free-text autocomplete scan.
    raw_id_fields = ("account",)
    autocomplete_fields = ("rep",)
    readonly_fields = ("created", "updated")
    show_full_result_count = False


@admin.register(QuotaAdjustment)
class QuotaAdjustmentAdmin(admin.ModelAdmin):
    """Adjustments are decided on /quotas/<id>/ (the approval rules live in the services), so the
    admin only shows them."""

    list_display = ("pk", "quota_plan", "component", "period", "amount", "status", "proposed_by", "approver")
    list_filter = ("status", "component")
    list_select_related = ("quota_plan", "period", "proposed_by", "approver")
    search_fields = ("reason",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(QuotaRelief)
class QuotaReliefAdmin(admin.ModelAdmin):
    list_display = (
        "quota_plan",
        "account_external_id",
        "from_code",
        "to_code",
        "effective_from",
        "total",
        "status",
    )
    list_filter = ("status", "event")
    search_fields = ("account_external_id", "account_name", "from_code", "to_code")
    list_select_related = ("quota_plan",)
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(QuotaChange)
class QuotaChangeAdmin(admin.ModelAdmin):
    """The append-only history: read-only here."""

    list_display = ("at", "quota_plan", "kind", "territory_code", "rep_name", "component", "period",
                    "old_amount", "new_amount", "actor")  # fmt: skip
    list_filter = ("kind", "component")
    search_fields = ("territory_code", "rep_name", "reason")
    list_select_related = ("quota_plan", "period", "actor")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ActivityGoal)
class ActivityGoalAdmin(admin.ModelAdmin):
    list_display = ("quota_plan", "territory", "metric", "target", "set_by", "updated")
    list_filter = ("metric",)
    list_select_related = ("quota_plan", "territory", "set_by")
    raw_id_fields = ("territory",)
    readonly_fields = ("created", "updated")

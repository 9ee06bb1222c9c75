"""Admin for fiscal periods, quota plans, quotas and bookings."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from .models import Booking, FiscalPeriod, Quota, QuotaPlan


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

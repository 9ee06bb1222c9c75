"""Warning signs, their check runs, balance snapshots and read caches: all written by services and
tasks, so the admin shows them read-only (a planner resolves a warning by fixing the plan)."""

from django.contrib import admin

from .models import PlanBalanceSnapshot, ReadCache, WarningCheck, WarningSign


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WarningSign)
class WarningSignAdmin(ReadOnlyAdmin):
    list_display = (
        "title",
        "kind",
        "severity",
        "plan",
        "territory",
        "rep",
        "first_seen",
        "last_seen",
        "resolved_at",
    )
    list_filter = ("kind", "severity", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "key", "territory__code", "rep__name")
    list_select_related = ("plan", "territory", "rep")
    raw_id_fields = ("plan", "territory", "rep", "last_check")


@admin.register(WarningCheck)
class WarningCheckAdmin(ReadOnlyAdmin):
    list_display = ("id", "trigger", "status", "progress", "message", "created_by", "created", "finished_at")
    list_filter = ("status", "trigger")
    search_fields = ("message", "celery_task_id")
    list_select_related = ("created_by",)


@admin.register(PlanBalanceSnapshot)
class PlanBalanceSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("plan", "taken_at", "source")
    list_filter = ("source",)
    search_fields = ("plan__name",)
    list_select_related = ("plan",)
    raw_id_fields = ("plan",)


@admin.register(ReadCache)
class ReadCacheAdmin(ReadOnlyAdmin):
    list_display = ("key", "seconds", "last_change_id", "created", "updated")
    search_fields = ("key",)
    exclude = ("value",)  # thousands of cells: not for reading here

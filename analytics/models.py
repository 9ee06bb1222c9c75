"""Warning signs and the runs of the check that finds them, and the balance snapshot of a published
plan that balance drift is measured against."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Rep, TimeStamped
from territories.choices import JobStatus
from territories.models import Plan, Territory

from .choices import CheckTrigger, Severity, SnapshotSource, WarningKind


class PlanBalanceSnapshot(TimeStamped):
    """Each leaf territory's accounts, revenue, potential and workload in a plan at one moment,
    normally right after it was published. Balance drift compares today's figures with these.

    `figures` = {"territories": {"<id>": {"code", "accounts", "revenue", "potential", "workload"}},
    "totals": {metric: n}}."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="balance_snapshots")
    taken_at = models.DateTimeField()
    source = models.CharField(max_length=10, choices=SnapshotSource.choices)
    figures = models.JSONField(default=dict)

    class Meta:
        ordering = ["plan_id", "-taken_at"]
        indexes = [models.Index(fields=["plan", "taken_at"], name="balance_snapshot_plan_idx")]

    def __str__(self) -> str:
        return f"{self.plan} at {self.taken_at:%Y-%m-%d %H:%M} ({self.source})"


class WarningCheck(TimeStamped):
    """One run of the warning checks (daily by Celery beat, or "check now"): status, progress 0–100
    and a summary of what was found, polled by the warnings page."""

    trigger = models.CharField(max_length=10, choices=CheckTrigger.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=255, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__lte=100), name="warning_check_progress_max_100")
        ]

    def __str__(self) -> str:
        return f"Warning check {self.pk} ({self.status})"


class WarningSign(TimeStamped):
    """A problem a check found in the active plan, with a suggested action. `key` identifies the
    same problem across runs (kind + what it is about), so a daily check updates an open warning
    instead of piling up copies; a warning no longer found is resolved, not deleted."""

    kind = models.CharField(max_length=30, choices=WarningKind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    key = models.CharField(max_length=200)
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="warning_signs")
    territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.CASCADE, related_name="warning_signs"
    )
    rep = models.ForeignKey(
        Rep, null=True, blank=True, on_delete=models.CASCADE, related_name="warning_signs"
    )
    title = models.CharField(max_length=255)
    detail = models.TextField(blank=True)
    suggestion = models.TextField(blank=True, help_text="What to do about it, in one sentence.")
    action_url = models.CharField(max_length=255, blank=True, help_text="Where the suggested action is done.")
    figures = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_check = models.ForeignKey(
        WarningCheck, null=True, blank=True, on_delete=models.SET_NULL, related_name="warnings"
    )

    class Meta:
        ordering = ["resolved_at", "severity", "-last_seen", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(resolved_at__isnull=True), name="warning_sign_one_open_per_key"
            )
        ]
        indexes = [models.Index(fields=["plan", "resolved_at"], name="warning_sign_plan_open_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.title}"


class ReadCache(TimeStamped):
    """The answer of an expensive read (bookings credited over a year, territory balance), kept while
    nothing it depends on was written: a 1M-booking year makes crediting the dashboard's slowest part.

    Statement triggers on bookings, accounts, account assignments, changes and plans add a row to
    analytics_datachange (an id and the writing transaction) on every write. A cache keeps the
    highest id it had seen and the snapshot it was computed in; a row with a higher id, or from a
    transaction that snapshot did not see (other than the computing one itself, whose earlier writes
    its queries saw), makes it stale (checked on every read, one small query).
    """

    key = models.CharField(max_length=200, help_text="credits:<year start>:<through>, balance:<plan id>")
    snapshot = models.TextField(help_text="pg_current_snapshot() when the computation started.")
    last_change_id = models.BigIntegerField(default=0)
    xact = models.CharField(
        max_length=30,
        blank=True,
        help_text="The computing transaction, if it had written: its own earlier writes are included.",
    )
    seconds = models.FloatField(default=0, help_text="How long the computation took.")
    value = models.JSONField(default=list)

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["key"], name="read_cache_unique_key")]

    def __str__(self) -> str:
        return self.key

"""Webhook subscriptions and their delivery log, and file import jobs."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from accounts.models import TimeStamped

from .choices import DeliveryStatus, ImportKind, ImportStatus, WebhookEvent


class WebhookSubscription(TimeStamped):
    """A URL that receives domain events as signed JSON POSTs.

    The secret is kept in clear because each delivery is signed with it (HMAC-SHA256 of the raw
    body); the API shows it once, when the subscription is created."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_subscriptions"
    )
    name = models.CharField(max_length=100, blank=True, help_text="What the receiving system is.")
    url = models.URLField(max_length=500)
    events = ArrayField(models.CharField(max_length=30, choices=WebhookEvent.choices))
    secret = models.CharField(max_length=128)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(events=[]), name="webhook_subscription_has_events"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({', '.join(self.events)})"


class WebhookDelivery(TimeStamped):
    """One event sent (or being sent) to one subscription: its body, every attempt and the outcome.

    `payload` is the whole JSON body; it is serialised the same way on every attempt, so the bytes
    and their signature do not change between retries."""

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=30, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempt_log = models.JSONField(
        default=list, blank=True, help_text="One entry per attempt: at, response_code, error, ms."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["subscription", "-created"], name="webhook_delivery_sub_idx"),
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.subscription_id} ({self.status})"


class ImportJob(TimeStamped):
    """A file import run in the background: accounts or reps (CSV/XLSX) or a plan's territories
    (GeoJSON, zipped Shapefile, GeoPackage, unit→territory CSV), with progress and a per-row report.

    The uploaded bytes live in the row, not on a disk, so a worker on another host can read them;
    they are dropped when the job ends."""

    kind = models.CharField(max_length=12, choices=ImportKind.choices)
    plan = models.ForeignKey(
        "territories.Plan", null=True, blank=True, on_delete=models.CASCADE, related_name="import_jobs"
    )
    file_name = models.CharField(max_length=255)
    file_size = models.PositiveBigIntegerField(default=0)
    data = models.BinaryField(null=True, blank=True, editable=False)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=255, blank=True)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="import_jobs"
    )
    celery_task_id = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__lte=100), name="import_job_progress_max_100"),
            models.CheckConstraint(
                condition=~Q(kind=ImportKind.TERRITORIES) | Q(plan__isnull=False),
                name="import_job_territories_have_plan",
            ),
        ]

    def __str__(self) -> str:
        return f"Import {self.kind} {self.file_name} ({self.status})"

"""Celery tasks of the integrations app: webhook deliveries and file imports."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import webhooks


@shared_task(bind=True, name="integrations.deliver_webhook", max_retries=webhooks.MAX_ATTEMPTS + 2)
def deliver_webhook(self, delivery_id: int) -> dict:
    """One attempt at webhook delivery `delivery_id`; a retryable failure (network, timeout, 5xx)
    schedules the next attempt with exponential backoff (30 s × 2^n, 6 attempts in all). Every
    attempt is recorded on the delivery row by the service."""
    from .services import webhook_delivery_attempt

    try:
        wait = webhook_delivery_attempt(delivery_id=delivery_id)
    except (OperationalError, InterfaceError) as exc:
        # The database went away: the attempt was not recorded, so trying again later is safe.
        raise self.retry(exc=exc, countdown=webhooks.BACKOFF_BASE_SECONDS) from exc
    if wait is not None:
        raise self.retry(countdown=wait)
    return {"delivery": delivery_id, "done": True}


@shared_task(name="integrations.requeue_stalled_webhooks")
def requeue_stalled_webhooks() -> int:
    """Queue again pending deliveries whose task was lost; meant for Celery beat (every few minutes)."""
    from .services import webhook_deliveries_requeue_stalled

    return webhook_deliveries_requeue_stalled()


@shared_task(bind=True, name="integrations.run_import", max_retries=3)
def run_import(self, job_id: int) -> dict:
    """Run import job `job_id`; progress, report and status go on the job row.

    Only losing the database before the job starts is retried; a failure while it runs is recorded
    on the job (the import is atomic, so nothing half-written is left)."""
    from .imports import import_job_run
    from .models import ImportJob

    try:
        job = ImportJob.objects.get(pk=job_id)
    except (OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=5) from exc
    job = import_job_run(job=job)
    return {"job": job.pk, "status": job.status}

"""Celery tasks of the quotas app: thin wrappers that take ids and call services."""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from territories.models import Plan

from . import services
from .models import QuotaPlan

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="quotas.compute_relief", max_retries=3)
def compute_relief(self, quota_plan_id: int, event: str, payload: dict) -> dict:
    """Move quota with the accounts a domain event moved (see services.quota_relief_*). Safe to run
    twice: relief is recorded once per quota plan, batch and account. Only losing the database is
    retried."""
    try:
        quota_plan = QuotaPlan.objects.filter(pk=quota_plan_id).first()
        plan = Plan.objects.filter(pk=payload["plan_id"]).first()
        if quota_plan is None or plan is None:
            # Deleted between the event and this run: there is nothing left to relieve.
            logger.info("Relief skipped: quota plan %s or plan %s no longer exists", quota_plan_id, payload)
            return {"quota_plan": quota_plan_id, "reliefs": 0}
        if event == "plan.published":
            superseded = payload.get("supersedes_plan_id")
            if superseded is None or quota_plan.territory_plan_id != superseded:
                return {"quota_plan": quota_plan_id, "reliefs": 0}
            reliefs = services.quota_relief_for_publish(
                quota_plan=quota_plan,
                new_plan=plan,
                old_plan=Plan.objects.get(pk=superseded),
                effective_from=dt.date.fromisoformat(payload["effective_from"]),
                event=event,
            )
        else:
            reliefs = services.quota_relief_for_batch(
                quota_plan=quota_plan, plan=plan, batch=payload["batch"], event=event
            )
    except (OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=10) from exc
    logger.info("Relief for quota plan %s after %s: %s account(s)", quota_plan_id, event, len(reliefs))
    return {"quota_plan": quota_plan_id, "reliefs": len(reliefs)}


@shared_task(bind=True, name="quotas.allocate_plan", max_retries=3)
def allocate_plan(self, quota_plan_id: int, actor_id: int | None, parameters: dict) -> dict:
    """Run a queued allocation (services.quota_plan_allocate_later); its status goes on the quota
    plan's `allocation_job`. Only losing the database before the run starts is retried; a refusal
    (the plan changed meanwhile) is recorded as failed with the service's message."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from tessera_common.errors import ApplicationError

    try:
        quota_plan = QuotaPlan.objects.get(pk=quota_plan_id)
        actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
        services.quota_plan_job_update(
            quota_plan_id=quota_plan_id, status="running", started_at=timezone.now().isoformat()
        )
    except (OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=5) from exc
    try:
        result = services.quota_plan_allocate(
            quota_plan=quota_plan, actor=actor, background=True, **parameters
        )
    except ApplicationError as exc:
        services.quota_plan_job_update(
            quota_plan_id=quota_plan_id, status="failed", error=exc.message,
            finished_at=timezone.now().isoformat(),
        )  # fmt: skip
        return {"quota_plan": quota_plan_id, "status": "failed", "error": exc.message}
    except Exception as exc:
        services.quota_plan_job_update(
            quota_plan_id=quota_plan_id, status="failed", error=f"Unexpected error: {exc}",
            finished_at=timezone.now().isoformat(),
        )  # fmt: skip
        raise
    services.quota_plan_job_update(
        quota_plan_id=quota_plan_id, status="succeeded", result=result, finished_at=timezone.now().isoformat()
    )
    return {"quota_plan": quota_plan_id, "status": "succeeded", "quotas": result["quotas"]}

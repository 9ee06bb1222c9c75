"""Celery tasks of the territories app: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from . import services
from .models import Plan

logger = logging.getLogger(__name__)

# Set while an owner assignment run is queued (territories/receivers.py), cleared when it starts.
ASSIGN_PENDING_KEY = "tessera:assign-unowned-pending"


@shared_task(name="territories.activate_due_plans")
def activate_due_plans() -> list[int]:
    """Archive active plans whose effective period has ended (scheduled by Celery beat)."""
    archived = services.plans_activate_due()
    if archived:
        logger.info("Archived plans whose period ended: %s", archived)
    return archived


@shared_task(name="territories.materialize_plan")
def materialize_plan(plan_id: int, actor_id: int | None = None) -> dict:
    """Rebuild a plan's assignments from its rules and geography in the background."""
    from django.contrib.auth import get_user_model

    plan = Plan.objects.get(pk=plan_id)
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    return services.plan_materialize(plan=plan, actor=actor).as_dict()


@shared_task(bind=True, name="territories.balance_plan", max_retries=3)
def balance_plan(self, job_id: int) -> dict:
    """Run balance job `job_id` (see territories.balancing); progress and result go on the job row.

    Only losing the database before the job starts is retried: once it runs, a failure is recorded
    on the job, and re-running a half-done solve would be guesswork."""
    from django.db import InterfaceError, OperationalError

    from .balancing import balance_job_run
    from .models import BalanceJob

    try:
        job = BalanceJob.objects.select_related("plan", "created_by").get(pk=job_id)
    except (OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=5) from exc
    job = balance_job_run(job=job)
    return {"job": job.pk, "status": job.status, "produced_plan": job.produced_plan_id}


@shared_task(name="territories.assign_unowned_accounts")
def assign_unowned_accounts() -> dict | None:
    """Owners in the active plan for accounts that have none (queued after accounts are created)."""
    from django.core.cache import cache

    cache.delete(ASSIGN_PENDING_KEY)
    result = services.accounts_assign_unowned()
    return result.as_dict() if result is not None else None

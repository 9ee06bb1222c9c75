"""Celery tasks of the analytics app: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="analytics.check_warnings_run", max_retries=3)
def check_warnings_run(self, check_id: int) -> dict:
    """Run warning check `check_id`; progress and the summary go on its row.

    Only losing the database before the run starts is retried: once it runs, a failure is recorded
    on the row."""
    from django.db import InterfaceError, OperationalError

    from .models import WarningCheck
    from .services import warning_check_run

    try:
        check = WarningCheck.objects.get(pk=check_id)
    except (OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=5) from exc
    check = warning_check_run(check=check)
    return {"check": check.pk, "status": check.status, "result": check.result}


@shared_task(name="analytics.check_warnings")
def check_warnings() -> dict:
    """The daily check (Celery beat): create a scheduled run and do it in this worker."""
    from .choices import CheckTrigger
    from .services import warning_check_create, warning_check_run

    check = warning_check_create(trigger=CheckTrigger.SCHEDULE, enqueue=False)
    check = warning_check_run(check=check)
    logger.info("Warning check %s: %s", check.pk, check.message)
    return {"check": check.pk, "status": check.status, "result": check.result}


@shared_task(name="analytics.snapshot_plan_balance")
def snapshot_plan_balance(plan_id: int) -> int | None:
    """Record a just-published plan's balance, the baseline its drift is measured from."""
    from territories.models import Plan

    from .services import plan_balance_snapshot_take

    plan = Plan.objects.filter(pk=plan_id).first()
    if plan is None:
        return None
    return plan_balance_snapshot_take(plan=plan).pk


# Set while a re-warm is queued (analytics/signals.py), cleared when it starts.
WARM_PENDING_KEY = "tessera:read-caches-warm-pending"


@shared_task(name="analytics.warm_read_caches")
def warm_read_caches() -> dict:
    """Recompute the dashboards' read caches that writes made stale (after bookings, moves and
    publishing, and every few minutes by Celery beat for any other write)."""
    from django.core.cache import cache

    from .services import read_caches_warm

    cache.delete(WARM_PENDING_KEY)
    return read_caches_warm()

"""Listens to territory events and enqueues quota relief for the quota plans they touch."""

from __future__ import annotations

from django.dispatch import receiver

from tessera_common.events import ASSIGNMENT_CHANGED, PLAN_PUBLISHED, domain_event

from . import services


@receiver(domain_event, dispatch_uid="quotas.relief")
def enqueue_relief(sender, event: str, payload: dict, **kwargs) -> None:
    """Only enqueue: the relief itself runs in a worker (quotas.compute_relief). The event is sent
    after the change committed, so the task sees it."""
    if event not in (ASSIGNMENT_CHANGED, PLAN_PUBLISHED) or not payload.get("plan_id"):
        return
    superseded = payload.get("supersedes_plan_id") if event == PLAN_PUBLISHED else None
    if event == PLAN_PUBLISHED and superseded is None:
        return  # nothing was in effect before: no account changed hands mid-period
    from .tasks import compute_relief

    for quota_plan_id in services.quota_plans_for_relief(
        plan_id=payload["plan_id"], superseded_plan_id=superseded
    ):
        compute_relief.delay(quota_plan_id, event, payload)

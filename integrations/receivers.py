"""Listens to domain events and turns them into webhook deliveries (queued, never sent inline)."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from tessera_common.events import domain_event

logger = logging.getLogger(__name__)


@receiver(domain_event, dispatch_uid="integrations.webhook_deliveries")
def queue_webhook_deliveries(sender, event: str, payload: dict, **kwargs) -> None:
    from .services import webhook_deliveries_create

    try:
        webhook_deliveries_create(event=event, payload=payload)
    except Exception:
        # The event's own work is committed already (events are sent on commit): a failure to log
        # deliveries must not turn that request into an error after the fact.
        logger.exception("Could not queue webhook deliveries for %s", event)

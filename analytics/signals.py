"""Listeners on domain events. They only enqueue (see tessera_common.events)."""

from __future__ import annotations

import logging

from kombu.exceptions import OperationalError

from tessera_common.events import PLAN_PUBLISHED

logger = logging.getLogger(__name__)


def on_domain_event(sender, event: str, payload: dict, **kwargs) -> None:
    """A published plan gets a balance snapshot, the baseline for the balance-drift warning."""
    if event == PLAN_PUBLISHED and payload.get("plan_id"):
        from .tasks import snapshot_plan_balance

        try:
            snapshot_plan_balance.delay(payload["plan_id"])
        except OperationalError:
            # The broker is down: publishing must not fail for it. The next warning check takes
            # the baseline instead, and says so in its notes.
            logger.warning("Could not enqueue the balance snapshot of plan %s", payload["plan_id"])

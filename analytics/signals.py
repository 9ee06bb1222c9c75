"""Listeners on domain events. They only enqueue (see tessera_common.events)."""

from __future__ import annotations

import logging

from kombu.exceptions import OperationalError

from tessera_common.events import ASSIGNMENT_CHANGED, PLAN_PUBLISHED
from tessera_common.queueing import enqueue_once

logger = logging.getLogger(__name__)


# A CRM's bookings arrive in bursts of bulk requests: one re-warm a few seconds after the first.
# A move or a publication is one transaction: its re-warm starts at once, so a manager who looks
# moments later finds it done or waits for it (one computation per key) rather than computing
# the year's credits in the request.
WARM_DELAY_SECONDS = 3


def read_caches_warm_soon(delay: int = WARM_DELAY_SECONDS) -> None:
    """Queue one re-warm of the dashboards' read caches (coalesced while one is pending). With the
    broker down the next dashboard view computes what is stale."""
    from .tasks import WARM_PENDING_KEY, warm_read_caches

    enqueue_once(
        WARM_PENDING_KEY,
        lambda: warm_read_caches.apply_async(countdown=delay),
        hold=max(delay, 1),
        what="the re-warm of the dashboards' read caches",
    )


def on_bookings_written(sender, count: int, **kwargs) -> None:
    read_caches_warm_soon()


def on_domain_event(sender, event: str, payload: dict, **kwargs) -> None:
    """A published plan gets a balance snapshot, the baseline for the balance-drift warning. Moves
    in the active plan and publishing change who is credited: the dashboards' caches re-warm."""
    if event in (PLAN_PUBLISHED, ASSIGNMENT_CHANGED):
        read_caches_warm_soon(delay=0)
    if event == PLAN_PUBLISHED and payload.get("plan_id"):
        from .tasks import snapshot_plan_balance

        try:
            snapshot_plan_balance.delay(payload["plan_id"])
        except OperationalError:
            # The broker is down: publishing must not fail for it. The next warning check takes
            # the baseline instead, and says so in its notes.
            logger.warning("Could not enqueue the balance snapshot of plan %s", payload["plan_id"])

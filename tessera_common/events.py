"""Domain events other parts of the product follow (webhook deliveries listen here).

Services announce what happened with `event_emit`; listeners connect to `domain_event`. Sending waits
for the surrounding transaction to commit, so a listener never sees work that was rolled back, and
listeners must only enqueue (never deliver inline) so the request that caused the event is not held up.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

PLAN_PUBLISHED = "plan.published"
ASSIGNMENT_CHANGED = "assignment.changed"
JOB_FINISHED = "job.finished"
EVENTS = (PLAN_PUBLISHED, ASSIGNMENT_CHANGED, JOB_FINISHED)

# Receivers get sender=<event name>, event=<event name>, payload=<JSON-serialisable dict>.
domain_event = Signal()


def event_emit(event: str, payload: dict) -> None:
    if event not in EVENTS:
        raise ValueError(f"Unknown domain event {event!r}; known: {', '.join(EVENTS)}")
    transaction.on_commit(lambda: domain_event.send(sender=event, event=event, payload=payload))


# Internal, not a webhook event: accounts were created (ids). Territories listens and gives them
# owners in the active plan, so a CRM that pushes a new account can ask who owns it moments later.
accounts_created = Signal()


def accounts_created_emit(account_ids: list[int]) -> None:
    if account_ids:
        ids = list(account_ids)
        transaction.on_commit(lambda: accounts_created.send(sender="accounts", account_ids=ids))


# Internal: bookings were created or changed (how many). Analytics listens and re-warms the
# dashboards' credit cache in a worker, so the first manager to look after an import does not wait.
bookings_written = Signal()


def bookings_written_emit(count: int) -> None:
    if count:
        transaction.on_commit(lambda: bookings_written.send(sender="quotas", count=count))

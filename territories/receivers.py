"""Territories follows what other apps announce (tessera_common.events)."""

from __future__ import annotations

from django.dispatch import receiver

from tessera_common.events import accounts_created
from tessera_common.queueing import enqueue_once

from .tasks import ASSIGN_PENDING_KEY, assign_unowned_accounts

# A CRM pushes accounts in bursts of bulk requests: one run a few seconds after the first of a burst
# assigns them all (the key is cleared when the run starts, so later accounts get a run of their own).
ASSIGN_DELAY_SECONDS = 3


@receiver(accounts_created)
def queue_owner_assignment(sender, account_ids: list[int], **kwargs) -> None:
    # With the broker down the accounts stay unowned until the next rebuild.
    enqueue_once(
        ASSIGN_PENDING_KEY,
        lambda: assign_unowned_accounts.apply_async(countdown=ASSIGN_DELAY_SECONDS),
        hold=60,
        what=f"owner assignment for {len(account_ids)} new accounts",
    )

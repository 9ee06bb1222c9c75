"""Territories follows what other apps announce (tessera_common.events)."""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.dispatch import receiver
from kombu.exceptions import OperationalError

from tessera_common.events import accounts_created

from .tasks import ASSIGN_PENDING_KEY, assign_unowned_accounts

logger = logging.getLogger(__name__)

# A CRM pushes accounts in bursts of bulk requests: one run a few seconds after the first of a burst
# assigns them all (the key is cleared when the run starts, so later accounts get a run of their own).
ASSIGN_DELAY_SECONDS = 3


@receiver(accounts_created)
def queue_owner_assignment(sender, account_ids: list[int], **kwargs) -> None:
    if not cache.add(ASSIGN_PENDING_KEY, 1, timeout=60):
        return
    try:
        assign_unowned_accounts.apply_async(countdown=ASSIGN_DELAY_SECONDS)
    except OperationalError:  # the broker is down: the accounts stay unowned until the next rebuild
        cache.delete(ASSIGN_PENDING_KEY)
        logger.exception("Could not queue owner assignment for %d new accounts", len(account_ids))

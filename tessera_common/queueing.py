"""Queueing a Celery task once per burst of writes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.cache import cache
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)


def enqueue_once(key: str, send: Callable[[], object], *, hold: float, what: str) -> bool:
    """Call `send` (which queues a task) unless one queued under `key` is still pending: for `hold`
    seconds, or until the task deletes `key` when it starts. With the broker down nothing is raised
    (the write that asked for it must not fail) and the key is released for the next try. Returns
    whether it was queued."""
    if not cache.add(key, 1, timeout=hold):
        return False
    try:
        send()
    except OperationalError:
        cache.delete(key)
        logger.warning("Could not queue %s: the broker is down", what)
        return False
    return True

"""Celery tasks of the shared layer."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="tessera_common.analyze_tables")
def analyze_tables(labels: list[str]) -> list[str]:
    """ANALYZE the tables of the models named by `labels` ("app.Model"), queued after large writes
    (tessera_common.db.analyze_after_large_write). Only project models: a label is never SQL."""
    from django.apps import apps
    from django.core.cache import cache
    from django.db import connection

    from .db import ANALYZE_PENDING_KEY

    done = []
    with connection.cursor() as cursor:
        for label in labels:
            cache.delete(ANALYZE_PENDING_KEY.format(label=label))
            table = apps.get_model(label)._meta.db_table
            cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
            done.append(table)
    logger.info("Analyzed %s", ", ".join(done))
    return done

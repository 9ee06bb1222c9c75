"""Small helpers for the ORM on PostgreSQL."""

from __future__ import annotations

from django.db import connection
from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    """`id_field__any=[1, 2, ...]`: `id_field = ANY(%s::bigint[])` with the ids as one array parameter.

    Django writes `__in` as `IN (%s, %s, ...)`, a placeholder per id: for a 1,000-account lasso,
    preparing those statements cost more than running them. Integer ids only."""

    lookup_name = "any"
    prepare_rhs = False

    def get_db_prep_lookup(self, value, connection):
        return "%s", [[int(v) for v in value]]

    def as_sql(self, compiler, connection):
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs_sql} = ANY({rhs_sql}::bigint[])", [*lhs_params, *rhs_params]


# Foreign keys keep lookups of their own (related lookups), so they are registered there too.
Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)


# Rows written since a table's last ANALYZE (this write included) that call for a new one: at least
# this many, and at least as many as the table held then. PostgreSQL scales its estimates to the
# table's current size by itself; what goes stale is the shape of the data, which a table that has
# doubled (or was never analyzed) no longer shows.
LARGE_WRITE_ROWS = 10_000
ANALYZE_GROWTH = 1.0  # of the rows the table held at its last ANALYZE
ANALYZE_PENDING_KEY = "tessera:analyze-pending:{label}"


def analyze_after_large_write(*models, rows: int) -> None:
    """Queue an ANALYZE of the tables of `models` (tessera_common.tasks.analyze_tables, after the
    commit, in a worker: 100k accounts take 0.6 s to sample) once enough rows were written since
    their last one. `rows` is what the caller's transaction wrote; PostgreSQL counts what earlier
    transactions did, so a CRM pushing 1,000 rows a request is covered too. Autovacuum would do this,
    but it may be off (it is on the machines this was built on) or behind, and PostgreSQL then plans
    reads of 100k fresh rows from no statistics (nested loops where a hash join takes a third)."""
    from django.db import transaction

    from .queueing import enqueue_once

    due = []
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(
                """SELECT COALESCE(s.n_mod_since_analyze, 0), c.reltuples
                   FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
                   WHERE c.oid = %s::regclass""",
                [model._meta.db_table],
            )
            earlier, size = cursor.fetchone()
            if earlier + rows >= max(LARGE_WRITE_ROWS, ANALYZE_GROWTH * size):  # size -1: never analyzed
                due.append(model._meta.label)
    if not due:
        return

    def queue() -> None:
        from .tasks import analyze_tables

        for label in due:
            enqueue_once(
                ANALYZE_PENDING_KEY.format(label=label),
                lambda label=label: analyze_tables.delay([label]),
                hold=60,
                what=f"statistics of {label}",
            )

    transaction.on_commit(queue)

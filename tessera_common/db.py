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
# this many, and at least a tenth of the table (autovacuum's own rule, with its scale factor).
LARGE_WRITE_ROWS = 10_000
LARGE_WRITE_FRACTION = 0.1


def analyze_after_large_write(*models, rows: int) -> None:
    """ANALYZE the tables of `models` once enough rows were written since their last ANALYZE (`rows`
    is what the caller's transaction wrote; PostgreSQL counts what earlier transactions did).
    Autovacuum may be off (it is on the machines this was built on) or not have caught up, and
    PostgreSQL would plan reads of 100k fresh rows from no statistics (nested loops where a hash
    join takes a third of the time). A CRM pushing 1,000 rows a request gets one every few dozen."""
    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            cursor.execute(
                """SELECT COALESCE(s.n_mod_since_analyze, 0), GREATEST(c.reltuples, 0)
                   FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
                   WHERE c.oid = %s::regclass""",
                [table],
            )
            earlier, size = cursor.fetchone()
            if earlier + rows >= max(LARGE_WRITE_ROWS, LARGE_WRITE_FRACTION * size):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")

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


# A bulk write at least this large refreshes the planner statistics of what it wrote.
LARGE_WRITE_ROWS = 10_000


def analyze_after_large_write(*models, rows: int) -> None:
    """ANALYZE the tables of `models` after a bulk write of `rows` rows. Autovacuum may be off (it is
    on the machines this was built on) or not have caught up yet, and PostgreSQL would plan the next
    reads of 100k fresh rows from no statistics (nested loops where a hash join takes a third)."""
    if rows < LARGE_WRITE_ROWS:
        return
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")

"""Small helpers for the ORM on PostgreSQL."""

from __future__ import annotations

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

from django.db import migrations

# Writes to plans, assignments and the change log record the plans they touched, so the dashboards' read
# caches can tell a planner's edit of a draft scenario (which credits nobody) from a move in the
# published plan (analytics.selectors.cached_read). Transition tables need one trigger per event.
# table -> the column naming the plan (a plan's own row names itself).
PLAN_TABLES = {
    "territories_accountassignment": "plan_id",
    "territories_change": "plan_id",
    "territories_plan": "id",
}
EVENTS = {
    "inserted": ("INSERT", "NEW TABLE AS new_rows", "SELECT {col} AS plan_id FROM new_rows"),
    "updated": (
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "SELECT {col} AS plan_id FROM old_rows UNION ALL SELECT {col} FROM new_rows",
    ),
    "deleted": ("DELETE", "OLD TABLE AS old_rows", "SELECT {col} AS plan_id FROM old_rows"),
}


def _function(table: str, name: str, rows: str) -> str:
    return f"""CREATE FUNCTION analytics_note_{table}_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   INSERT INTO analytics_datachange (table_name, plan_ids)
                   SELECT TG_TABLE_NAME, array_agg(DISTINCT plan_id) FROM ({rows}) touched
                   HAVING count(*) > 0;
                   RETURN NULL;
               END $$"""


def _forward() -> list[str]:
    sql = ["ALTER TABLE analytics_datachange ADD COLUMN plan_ids bigint[]"]
    for table, col in PLAN_TABLES.items():
        sql.append(f"DROP TRIGGER IF EXISTS analytics_{table}_changed ON {table}")
        for name, (event, referencing, rows) in EVENTS.items():
            sql.append(_function(table, name, rows.format(col=col)))
            sql.append(
                f"""CREATE TRIGGER analytics_{table}_{name} AFTER {event} ON {table}
                    REFERENCING {referencing} FOR EACH STATEMENT
                    EXECUTE FUNCTION analytics_note_{table}_{name}()"""
            )
        sql.append(
            f"""CREATE TRIGGER analytics_{table}_truncated AFTER TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION analytics_note_data_change()"""
        )
    return sql


def _backward() -> list[str]:
    sql = []
    for table in PLAN_TABLES:
        sql += [f"DROP TRIGGER IF EXISTS analytics_{table}_{name} ON {table}" for name in [*EVENTS, "truncated"]]
        sql += [f"DROP FUNCTION IF EXISTS analytics_note_{table}_{name}()" for name in EVENTS]
        sql.append(
            f"""CREATE TRIGGER analytics_{table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
                ON {table} FOR EACH STATEMENT EXECUTE FUNCTION analytics_note_data_change()"""
        )
    sql.append("ALTER TABLE analytics_datachange DROP COLUMN plan_ids")
    return sql


class Migration(migrations.Migration):
    dependencies = [("analytics", "0004_datachange_booking_days"), ("territories", "0005_base_tile")]

    operations = [migrations.RunSQL(sql=_forward(), reverse_sql=_backward())]

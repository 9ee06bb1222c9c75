from django.db import migrations

# A write to bookings records the booking days it touched, so the credit cache can recompute only
# those months (analytics.selectors.credit_cells); a write to anything else still makes every
# cache compute again. Transition tables need one trigger per event.
BOOKING_EVENTS = {
    "inserted": ("INSERT", "NEW TABLE AS new_rows", "SELECT booked_on AS day FROM new_rows"),
    "updated": (
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "SELECT booked_on AS day FROM old_rows UNION ALL SELECT booked_on FROM new_rows",
    ),
    "deleted": ("DELETE", "OLD TABLE AS old_rows", "SELECT booked_on AS day FROM old_rows"),
}


def _function(name: str, rows: str) -> str:
    return f"""CREATE FUNCTION analytics_note_bookings_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   INSERT INTO analytics_datachange (table_name, day_from, day_to)
                   SELECT TG_TABLE_NAME, min(day), max(day) FROM ({rows}) touched HAVING count(*) > 0;
                   RETURN NULL;
               END $$"""


class Migration(migrations.Migration):
    dependencies = [("analytics", "0003_read_cache_xact"), ("quotas", "0004_booking_month_statistics")]

    operations = [
        migrations.RunSQL(
            sql=[
                """ALTER TABLE analytics_datachange ADD COLUMN table_name text,
                       ADD COLUMN day_from date, ADD COLUMN day_to date""",
                """CREATE OR REPLACE FUNCTION analytics_note_data_change() RETURNS trigger
                   LANGUAGE plpgsql AS $$
                   BEGIN
                       INSERT INTO analytics_datachange (table_name) VALUES (TG_TABLE_NAME);
                       RETURN NULL;
                   END $$""",
                "DROP TRIGGER IF EXISTS analytics_quotas_booking_changed ON quotas_booking",
                *[_function(name, rows) for name, (_, _, rows) in BOOKING_EVENTS.items()],
                *[
                    f"""CREATE TRIGGER analytics_quotas_booking_{name} AFTER {event} ON quotas_booking
                        REFERENCING {referencing} FOR EACH STATEMENT
                        EXECUTE FUNCTION analytics_note_bookings_{name}()"""
                    for name, (event, referencing, _) in BOOKING_EVENTS.items()
                ],
                """CREATE TRIGGER analytics_quotas_booking_truncated AFTER TRUNCATE ON quotas_booking
                   FOR EACH STATEMENT EXECUTE FUNCTION analytics_note_data_change()""",
            ],
            reverse_sql=[
                "DROP TRIGGER IF EXISTS analytics_quotas_booking_truncated ON quotas_booking",
                *[
                    f"DROP TRIGGER IF EXISTS analytics_quotas_booking_{name} ON quotas_booking"
                    for name in BOOKING_EVENTS
                ],
                *[f"DROP FUNCTION IF EXISTS analytics_note_bookings_{name}()" for name in BOOKING_EVENTS],
                """CREATE TRIGGER analytics_quotas_booking_changed
                   AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quotas_booking
                   FOR EACH STATEMENT EXECUTE FUNCTION analytics_note_data_change()""",
                """CREATE OR REPLACE FUNCTION analytics_note_data_change() RETURNS trigger
                   LANGUAGE plpgsql AS $$
                   BEGIN
                       INSERT INTO analytics_datachange DEFAULT VALUES;
                       RETURN NULL;
                   END $$""",
                """ALTER TABLE analytics_datachange DROP COLUMN table_name, DROP COLUMN day_from,
                       DROP COLUMN day_to""",
            ],
        )
    ]

import importlib

from django.db import migrations

# Writes to plans, assignments and the change log now also record the first booking day whose credit
# they may change (day_from; day_to stays open), so the credit cache re-credits from that month on
# instead of the whole year (analytics.selectors.credit_cells). The rules follow the crediting SQL in
# analytics.selectors: a booking of day D goes to the account's primary territory in the plan in
# effect on D, unless a move logged in that plan after the end of D (and after its publication)
# names the territory it came from.
#
# - An account whose primary territory changed: the assignment decides only the days after the last
#   move logged for it, so from that move's day; from the plan's first day when there is none.
# - A logged move that names as its origin the account's current primary territory (services log
#   the move before they write the assignment) gives the days before it the owner they had: no day.
#   Any other move, and any edit or removal of the log, counts from the plan's first day.
# - A plan row: the first day its credited coverage (published, active or archived, effective from
#   .. to) differs before and after the write; a version bump or a rename changes none.
#
# Only plans that credit bookings count. "No day" is the sentinel 9999-12-31 (after every period);
# a NULL day still means "anything may have changed". Dates of moves are taken in UTC and a day
# earlier, which covers every time zone the site may be configured in.
NO_DAY = "DATE '9999-12-31'"
CREDITED = (
    "{p}.status IN ('active', 'archived') AND {p}.published_at IS NOT NULL AND {p}.effective_from IS NOT NULL"
)
MOVED = "'account_moved'"
PRIMARY = "'primary'"

EVENTS = {
    "inserted": ("INSERT", "NEW TABLE AS new_rows", ["new_rows"]),
    "updated": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", ["old_rows", "new_rows"]),
    "deleted": ("DELETE", "OLD TABLE AS old_rows", ["old_rows"]),
}
NO_ROWS = """(SELECT NULL::bigint AS plan_id, NULL::bigint AS account_id, NULL::bigint AS territory_id,
                    NULL::text AS role WHERE false)"""


def _both(tables: list[str], columns: str) -> str:
    return " UNION ALL ".join(f"SELECT {columns} FROM {t}" for t in tables)


def _function(table: str, event: str, touched: str, day: str) -> str:
    """Record the plans touched; when one of them credits bookings, `day` computes day_from."""
    return f"""CREATE OR REPLACE FUNCTION analytics_note_{table}_{event}() RETURNS trigger
               LANGUAGE plpgsql AS $$
               DECLARE
                   touched bigint[];
                   first_day date := {NO_DAY};
               BEGIN
                   SELECT array_agg(DISTINCT plan_id) INTO touched FROM ({touched}) t;
                   IF touched IS NULL THEN
                       RETURN NULL;
                   END IF;
                   IF EXISTS (SELECT 1 FROM territories_plan p WHERE p.id = ANY(touched)
                              AND {CREDITED.format(p="p")}) THEN
                       {day}
                       first_day := COALESCE(first_day, {NO_DAY});
                   END IF;
                   INSERT INTO analytics_datachange (table_name, plan_ids, day_from)
                   VALUES (TG_TABLE_NAME, touched, first_day);
                   RETURN NULL;
               END $$"""


def _assignment_day(event: str) -> str:
    tables = EVENTS[event][2]
    before = "old_rows" if "old_rows" in tables else NO_ROWS
    after = "new_rows" if "new_rows" in tables else NO_ROWS
    return f"""
        WITH before AS (SELECT plan_id, account_id, territory_id FROM {before} b WHERE b.role = {PRIMARY}),
             after AS (SELECT plan_id, account_id, territory_id FROM {after} a WHERE a.role = {PRIMARY}),
             changed AS (
                 SELECT COALESCE(a.plan_id, b.plan_id) AS plan_id,
                        COALESCE(a.account_id, b.account_id) AS account_id
                 FROM before b FULL JOIN after a ON a.plan_id = b.plan_id AND a.account_id = b.account_id
                 WHERE a.territory_id IS DISTINCT FROM b.territory_id)
        SELECT min(GREATEST(effective_from,
                            COALESCE((last_move AT TIME ZONE 'UTC')::date - 1, effective_from)))
        INTO first_day
        FROM (SELECT p.effective_from, max(ch.at) AS last_move
              FROM changed c
              JOIN territories_plan p ON p.id = c.plan_id AND {CREDITED.format(p="p")}
              LEFT JOIN territories_change ch
                ON ch.account_id = c.account_id AND ch.plan_id = c.plan_id AND ch.kind = {MOVED}
               AND ch.at > p.published_at
              GROUP BY c.plan_id, c.account_id, p.effective_from) latest;"""


def _change_day(event: str) -> str:
    if event != "inserted":
        rows = _both(EVENTS[event][2], "plan_id, kind")
        return f"""
        SELECT min(p.effective_from) INTO first_day
        FROM ({rows}) c JOIN territories_plan p ON p.id = c.plan_id AND {CREDITED.format(p="p")}
        WHERE c.kind = {MOVED};"""
    return f"""
        WITH moves AS (
            SELECT n.plan_id, n.account_id, p.effective_from, count(*) AS logged,
                   min(n.territory_from_id) AS territory_from_id
            FROM new_rows n JOIN territories_plan p ON p.id = n.plan_id AND {CREDITED.format(p="p")}
            WHERE n.kind = {MOVED} AND n.account_id IS NOT NULL AND n.at > p.published_at
            GROUP BY n.plan_id, n.account_id, p.effective_from)
        SELECT min(m.effective_from) INTO first_day
        FROM moves m LEFT JOIN territories_accountassignment aa
          ON aa.plan_id = m.plan_id AND aa.account_id = m.account_id AND aa.role = {PRIMARY}
        WHERE m.logged > 1 OR m.territory_from_id IS DISTINCT FROM aa.territory_id;"""


def _plan_day(event: str) -> str:
    if event != "updated":
        rows = EVENTS[event][2][0]
        return f"SELECT min(r.effective_from) INTO first_day FROM {rows} r WHERE {CREDITED.format(p='r')};"
    old_credited, new_credited = CREDITED.format(p="o"), CREDITED.format(p="n")
    return f"""
        SELECT min(CASE
                   WHEN ({old_credited}) AND ({new_credited}) THEN CASE
                       WHEN o.published_at IS DISTINCT FROM n.published_at
                            OR o.effective_from <> n.effective_from
                           THEN LEAST(o.effective_from, n.effective_from)
                       WHEN o.effective_to IS DISTINCT FROM n.effective_to
                           THEN LEAST(o.effective_to, n.effective_to)
                       END
                   WHEN ({old_credited}) THEN o.effective_from
                   WHEN ({new_credited}) THEN n.effective_from
               END)
        INTO first_day
        FROM old_rows o JOIN new_rows n ON n.id = o.id;"""


def _forward() -> list[str]:
    sql = []
    for event, (_, _, tables) in EVENTS.items():
        sql.append(
            _function(
                "territories_accountassignment", event, _both(tables, "plan_id"), _assignment_day(event)
            )
        )
        sql.append(_function("territories_change", event, _both(tables, "plan_id"), _change_day(event)))
        sql.append(_function("territories_plan", event, _both(tables, "id AS plan_id"), _plan_day(event)))
    return sql


def _backward() -> list[str]:
    previous = importlib.import_module("analytics.migrations.0005_datachange_plan_ids")
    sql = []
    for table, col in previous.PLAN_TABLES.items():
        for event, (_, _, rows) in previous.EVENTS.items():
            sql.append(f"DROP FUNCTION analytics_note_{table}_{event}() CASCADE")
            sql.append(previous._function(table, event, rows.format(col=col)))
            referencing = previous.EVENTS[event][1]
            sql.append(
                f"""CREATE TRIGGER analytics_{table}_{event} AFTER {previous.EVENTS[event][0]} ON {table}
                    REFERENCING {referencing} FOR EACH STATEMENT
                    EXECUTE FUNCTION analytics_note_{table}_{event}()"""
            )
    return sql


class Migration(migrations.Migration):
    dependencies = [("analytics", "0005_datachange_plan_ids")]

    operations = [migrations.RunSQL(sql=_forward(), reverse_sql=_backward())]

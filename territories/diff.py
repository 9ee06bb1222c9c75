"""Comparing two plans: which accounts change owner, how disruptive that is, and how each
territory's figures differ. Territories of the two plans are matched by code (a clone keeps codes).

`plan_diff(plan=B, other=A)` reads as "going from A to B": `from` is A's territory, `to` is B's."""

from __future__ import annotations

from django.db import connection

from accounts.models import Account

from .choices import AssignmentRole
from .metrics import METRIC_NAMES, plan_tree
from .models import AccountAssignment, Plan, Territory
from .selectors import visible_territory_ids

DIFF_DEFAULT_LIMIT = 500
DIFF_MAX_LIMIT = 5000

_PAIRS_SQL = """
WITH p AS (
    SELECT aa.account_id, aa.territory_id FROM {assignment} aa
    WHERE aa.plan_id = %(plan)s AND aa.role = %(primary)s
), o AS (
    SELECT aa.account_id, aa.territory_id FROM {assignment} aa
    WHERE aa.plan_id = %(other)s AND aa.role = %(primary)s
), pairs AS (
    SELECT COALESCE(p.account_id, o.account_id) AS account_id,
           p.territory_id AS plan_territory, pt.code AS plan_code,
           o.territory_id AS other_territory, ot.code AS other_code
    FROM p FULL JOIN o ON o.account_id = p.account_id
    LEFT JOIN {territory} pt ON pt.id = p.territory_id
    LEFT JOIN {territory} ot ON ot.id = o.territory_id
    WHERE %(everything)s OR p.territory_id = ANY(%(plan_visible)s) OR o.territory_id = ANY(%(other_visible)s)
)
"""


def plan_diff(*, plan: Plan, other: Plan, user, limit: int = DIFF_DEFAULT_LIMIT) -> dict:
    """Moved accounts (owner territory code differs, or owned in one plan only), the share of
    accounts and revenue that moves, and per-territory metric deltas. A user who does not see
    everything gets the accounts owned by their territories in either plan."""
    plan_ids = visible_territory_ids(user=user, plan=plan)
    other_ids = visible_territory_ids(user=user, plan=other)
    everything = plan_ids is None and other_ids is None
    params = {
        "plan": plan.pk,
        "other": other.pk,
        "primary": AssignmentRole.PRIMARY,
        "everything": everything,
        "plan_visible": plan_ids or [],
        "other_visible": other_ids or [],
    }
    pairs = _PAIRS_SQL.format(assignment=AccountAssignment._meta.db_table, territory=Territory._meta.db_table)
    account_table = Account._meta.db_table
    moved_condition = "pairs.plan_code IS DISTINCT FROM pairs.other_code"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""{pairs}
                SELECT count(*), count(*) FILTER (WHERE {moved_condition}),
                       COALESCE(sum(a.revenue), 0),
                       COALESCE(sum(a.revenue) FILTER (WHERE {moved_condition}), 0)
                FROM pairs JOIN {account_table} a ON a.id = pairs.account_id""",
            params,
        )
        total, moved, revenue_total, revenue_moved = cursor.fetchone()
        cursor.execute(
            f"""{pairs}
                SELECT a.id, a.external_id, a.name, a.revenue, pairs.other_territory, pairs.plan_territory
                FROM pairs JOIN {account_table} a ON a.id = pairs.account_id
                WHERE {moved_condition}
                ORDER BY a.revenue DESC, a.id
                LIMIT %(limit)s""",
            {**params, "limit": limit},
        )
        rows = cursor.fetchall()
    referenced = {tid for row in rows for tid in row[4:6] if tid is not None}
    refs = {t["id"]: t for t in Territory.objects.filter(pk__in=referenced).values("id", "code", "name")}
    moved_accounts = [
        {
            "account_id": account_id,
            "external_id": external_id,
            "name": name,
            "revenue": float(revenue),
            "from": refs.get(from_id),
            "to": refs.get(to_id),
        }
        for account_id, external_id, name, revenue, from_id, to_id in rows
    ]
    return {
        "plan": plan.pk,
        "other": other.pk,
        "plan_name": plan.name,
        "other_name": other.name,
        "accounts_total": total,
        "moved_total": moved,
        "moved_share": round(moved / total, 4) if total else 0.0,
        "disruption": {
            "accounts": round(moved / total, 4) if total else 0.0,
            "revenue": round(float(revenue_moved) / float(revenue_total), 4) if revenue_total else 0.0,
        },
        "limit": limit,
        "moved_accounts": moved_accounts,
        "territories": _territory_deltas(plan, other, user),
    }


def _territory_deltas(plan: Plan, other: Plan, user) -> list[dict]:
    """Metrics of each territory code in either plan (visible to the user), side by side."""
    mine = {n.territory.code: n for n in plan_tree(plan=plan, user=user).ordered()}
    theirs = {n.territory.code: n for n in plan_tree(plan=other, user=user).ordered()}
    codes = list(mine) + [code for code in theirs if code not in mine]
    out = []
    for code in codes:
        a, b = mine.get(code), theirs.get(code)
        metrics = {}
        for name in METRIC_NAMES:
            va = a.metrics[name] if a else 0
            vb = b.metrics[name] if b else 0
            metrics[name] = {"plan": _r(va), "other": _r(vb), "delta": _r(va - vb)}
        out.append(
            {
                "code": code,
                "name": (a or b).territory.name,
                "is_leaf": (a or b).is_leaf,
                "plan_territory_id": a.territory.pk if a else None,
                "other_territory_id": b.territory.pk if b else None,
                "metrics": metrics,
            }
        )
    return out


def _r(value):
    return round(value, 2) if isinstance(value, float) else value

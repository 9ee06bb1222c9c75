"""Attainment, pacing and fairness reads, scoped to what the user may see.

Crediting: a booking belongs to the leaf territory that owned its account (primary assignment) in
the plan in effect on the booking date, and to that territory's reps by their membership shares.
All bookings of a period are credited in one set-based query grouped by (plan, territory, month,
component); everything above that (roll-up, quotas, pacing) works on those few thousand rows.

Bookings credited under an earlier plan (before a mid-period publish) are shown in the hierarchy
of the plan in effect at the end of the window (the "display plan"), matched by territory code; a
territory that no longer exists counts towards its nearest ancestor whose code still does. The
same matching places quotas, which live on the territories of the quota plan's territory plan.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.choices import Role
from accounts.models import Account, Rep
from analytics import metrics
from quotas.choices import Component, PeriodKind, QuotaPlanStatus
from quotas.models import ActivityGoal, Booking, FiscalPeriod, Quota, QuotaPlan
from territories.choices import AssignmentRole, ChangeKind, MemberRole, PlanStatus
from territories.models import AccountAssignment, Plan, Territory, TerritoryMembership
from territories.selectors import plan_active_on, visible_territory_ids
from tessera_common.errors import ApplicationError

PERIOD_KEYS = ("month", "quarter", "ytd")
LEVEL_REP = "rep"
# Attainment histogram bins (fractions of quota): below 50%, 50–70%, ... 150% and above.
ATTAINMENT_EDGES = [0.5, 0.7, 0.9, 1.1, 1.3, 1.5]
BALANCE_METRICS = ("accounts", "revenue", "potential", "workload")

# The owner of a booking: the primary assignment of its account in the plan in effect on the booking
# date, with moves made in that plan after the date undone from the append-only Change log (as
# territories.ownership reads it): the earliest move after the end of the booking day names the
# territory the account came from, i.e. its owner that day. A day before the plan was published
# counts as the moment of publishing: the plan's owners when it took effect.
#
# Per crediting plan (usually one or two), with the plan, dates and publication bound as scalars so
# PostgreSQL plans with real estimates. Accounts never moved since publication (nearly all) take the
# fast path, a hash join of the period's bookings with today's assignments; the few moved ones are
# resolved booking by booking: each booking looks up the first move after its day through the
# index on the log's account (a join with all the plan's moves went quadratic once a plan had
# thousands: 7 s for 1,000 accounts moved back and forth, with the log's statistics stale).
_MOVES_FROM = """FROM territories_change
    WHERE plan_id = %(plan)s AND kind = %(moved)s AND account_id IS NOT NULL AND at > %(published)s"""
_MOVES_CTE = f"""
WITH moved AS (SELECT DISTINCT account_id {_MOVES_FROM}),
"""
_UNMOVED_BOOKINGS = """
    SELECT b.account_id, b.amount, b.booked_on, b.component, aa.territory_id
    FROM quotas_booking b
    JOIN territories_accountassignment aa
      ON aa.account_id = b.account_id AND aa.plan_id = %(plan)s AND aa.role = %(primary)s
    WHERE b.booked_on >= %(d_from)s AND b.booked_on <= %(d_to)s {component} {scope_assignments}
      AND NOT EXISTS (SELECT 1 FROM moved WHERE moved.account_id = b.account_id)
"""
_MOVED_BOOKINGS = """
    SELECT b.account_id, b.amount, b.booked_on, b.component,
           CASE WHEN m.found THEN m.territory_from_id ELSE aa.territory_id END
    FROM moved k
    JOIN quotas_booking b
      ON b.account_id = k.account_id AND b.booked_on >= %(d_from)s AND b.booked_on <= %(d_to)s {component}
    LEFT JOIN territories_accountassignment aa
      ON aa.account_id = k.account_id AND aa.plan_id = %(plan)s AND aa.role = %(primary)s
    LEFT JOIN LATERAL (
        SELECT true AS found, ch.territory_from_id FROM territories_change ch
        WHERE ch.account_id = b.account_id AND ch.plan_id = %(plan)s AND ch.kind = %(moved)s
          AND ch.at > GREATEST((b.booked_on + 1)::timestamp AT TIME ZONE %(tz)s, %(published)s)
        ORDER BY ch.at, ch.id LIMIT 1
    ) m ON true
"""
_OWNED_BOOKINGS_SQL = (
    _MOVES_CTE + "owned AS (" + _UNMOVED_BOOKINGS + "    UNION ALL" + _MOVED_BOOKINGS + ")\n"
)

# The accounts moved in a plan since it was published: the only ones whose bookings need the Change
# log. Read first, so the credit of every other account is one plain join PostgreSQL can run in
# parallel workers (a CTE in the same statement kept it on one core: 1.4 s over 1M bookings).
_MOVED_ACCOUNTS_SQL = f"SELECT DISTINCT account_id {_MOVES_FROM}"

# The month is grouped by date_trunc over a timestamp (immutable, unlike the timestamptz one), the
# expression quotas' extended statistics (quotas_booking_month_stats) describe: with them PostgreSQL
# knows a year has 12 months and aggregates in each worker before gathering.
_CREDIT_UNMOVED_SQL = """
SELECT aa.territory_id, date_trunc('month', b.booked_on::timestamp)::date, b.component,
       SUM(b.amount), COUNT(*)
FROM quotas_booking b
JOIN territories_accountassignment aa
  ON aa.account_id = b.account_id AND aa.plan_id = %(plan)s AND aa.role = %(primary)s
WHERE b.booked_on >= %(d_from)s AND b.booked_on <= %(d_to)s AND aa.territory_id IS NOT NULL
  AND NOT (b.account_id = ANY(%(moved_ids)s::bigint[]))
GROUP BY aa.territory_id, date_trunc('month', b.booked_on::timestamp), b.component
"""

# The bookings of the moved accounts (the ids _MOVED_ACCOUNTS_SQL read), each credited through the
# Change log.
_CREDIT_MOVED_SQL = (
    "WITH moved AS (SELECT unnest(%(moved_ids)s::bigint[]) AS account_id),\n"
    + "owned AS ("
    + _MOVED_BOOKINGS.format(component="")
    + """)
SELECT territory_id, date_trunc('month', booked_on::timestamp)::date, component, SUM(amount), COUNT(*)
FROM owned WHERE territory_id IS NOT NULL
GROUP BY territory_id, date_trunc('month', booked_on::timestamp), component
"""
)

_ACCOUNTS_SQL = (
    _OWNED_BOOKINGS_SQL
    + """
SELECT account_id, territory_id, SUM(amount), COUNT(*), MAX(booked_on)
FROM owned WHERE territory_id IS NOT NULL {scope_owned}
GROUP BY 1, 2
"""
)


def _crediting_params(plan: Plan, d_from: dt.date, d_to: dt.date, **extra) -> dict:
    """The parameters every crediting statement binds for one plan and its dates."""
    return {
        "moved": ChangeKind.ACCOUNT_MOVED,
        "primary": AssignmentRole.PRIMARY,
        "tz": settings.TIME_ZONE,
        "plan": plan.pk,
        "d_from": d_from,
        "d_to": d_to,
        "published": plan.published_at,
        **extra,
    }


def _owned_rows(
    template: str,
    crediting: list,
    territories: list[int] | None,
    component: str | None,
) -> list[tuple]:
    """Run `template` once per crediting plan; each row is prefixed with the plan id."""
    parts = {"scope_assignments": "", "scope_owned": "", "component": ""}
    base: dict = {}
    if territories is not None:
        base["territories"] = territories
        parts["scope_assignments"] = "AND aa.territory_id = ANY(%(territories)s::bigint[])"
        parts["scope_owned"] = "AND territory_id = ANY(%(territories)s::bigint[])"
    if component:
        base["component"] = component
        parts["component"] = "AND b.component = %(component)s"
    sql = template.format(**parts)
    rows: list[tuple] = []
    with connection.cursor() as cursor:
        for plan, d_from, d_to, _mapping in crediting:
            cursor.execute(sql, _crediting_params(plan, d_from, d_to, **base))
            rows += [(plan.pk, *row) for row in cursor.fetchall()]
    return rows


def _credit_rows(crediting: list) -> list[tuple]:
    """[(plan_id, territory_id, month, component, amount, bookings)] of every booking in each
    crediting plan's dates: unmoved accounts in one parallel join, moved ones through the log."""
    rows: list[tuple] = []
    with transaction.atomic(), connection.cursor() as cursor:
        # Compiling this one statement took 50 ms of JIT and saved nothing.
        cursor.execute("SET LOCAL jit = off")
        for plan, d_from, d_to, _mapping in crediting:
            params = _crediting_params(plan, d_from, d_to)
            cursor.execute(_MOVED_ACCOUNTS_SQL, params)
            params["moved_ids"] = [account_id for (account_id,) in cursor.fetchall()]
            cursor.execute(_CREDIT_UNMOVED_SQL, params)
            cells = {(t, m, c): [a, n] for t, m, c, a, n in cursor.fetchall()}
            if params["moved_ids"]:
                cursor.execute(_CREDIT_MOVED_SQL, params)
                for t, m, c, a, n in cursor.fetchall():
                    cell = cells.setdefault((t, m, c), [0, 0])
                    cell[0] += a
                    cell[1] += n
            rows += [(plan.pk, t, m, c, a, n) for (t, m, c), (a, n) in cells.items()]
    return rows


# --------------------------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Window:
    """The period a dashboard shows: bookings from `start` through `through` (inclusive) against the
    quota of `start`..`end`. `through` is the as-of date cut at the period's end."""

    key: str
    label: str
    start: dt.date
    end: dt.date
    through: dt.date
    year_start: dt.date
    year_end: dt.date
    fiscal_year: FiscalPeriod | None

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "as_of": self.through.isoformat(),
            "fiscal_year": self.fiscal_year.name if self.fiscal_year else None,
        }


def _month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    start = day.replace(day=1)
    end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    return start, end


def period_window(*, period: str | None = None, as_of: dt.date | None = None) -> Window:
    """Resolve `period` (month, quarter, ytd, or a fiscal period name such as FY2026-Q1) at `as_of`
    (today by default). Fiscal periods come from the FiscalPeriod table; without one covering the
    date, calendar months, quarters and years stand in."""
    period = (period or "ytd").strip()
    today = timezone.localdate()
    named = None
    if period not in PERIOD_KEYS:
        named = FiscalPeriod.objects.filter(name=period).first()
        if named is None:
            raise ApplicationError(
                f"Unknown period {period!r}: use month, quarter, ytd or a fiscal period name like FY2026-Q1.",
                {"period": ["unknown period"]},
            )
        as_of = as_of or min(today, named.end)
    as_of = as_of or today
    day = named.start if named is not None else as_of
    year = (
        FiscalPeriod.objects.filter(kind=PeriodKind.YEAR, start__lte=day, end__gte=day)
        .order_by("start")
        .first()
    )
    year_start = year.start if year else day.replace(month=1, day=1)
    year_end = year.end if year else day.replace(month=12, day=31)
    if named is not None:
        start, end, label = named.start, named.end, named.name
    elif period == "ytd":
        start, end = year_start, year_end
        label = f"{year.name if year else year_start.year} year to date"
    else:
        kind = PeriodKind.MONTH if period == "month" else PeriodKind.QUARTER
        fp = FiscalPeriod.objects.filter(kind=kind, start__lte=as_of, end__gte=as_of).first()
        if fp is not None:
            start, end, label = fp.start, fp.end, fp.name
        elif period == "month":
            start, end = _month_bounds(as_of)
            label = f"{start:%B %Y}"
        else:
            q = (as_of.month - 1) // 3
            start = dt.date(as_of.year, 3 * q + 1, 1)
            end = _month_bounds(dt.date(as_of.year, 3 * q + 3, 1))[1]
            label = f"{as_of.year} Q{q + 1}"
    through = min(max(as_of, start - dt.timedelta(days=1)), end)
    return Window(
        key=period if named is None else named.name,
        label=label,
        start=start,
        end=end,
        through=through,
        year_start=min(year_start, start),
        year_end=max(year_end, end),
        fiscal_year=year,
    )


def period_choices() -> list[dict]:
    """The relative periods and the named fiscal years and quarters, for selectors in the UI."""
    named = FiscalPeriod.objects.filter(kind__in=[PeriodKind.YEAR, PeriodKind.QUARTER]).order_by(
        "-start", "kind"
    )
    return [
        {"key": "month", "label": "This month"},
        {"key": "quarter", "label": "This quarter"},
        {"key": "ytd", "label": "Year to date"},
        *({"key": p.name, "label": p.name} for p in named[:40]),
    ]


# ---------------------------------------------------------------------------------------- hierarchy


@dataclass
class Node:
    id: int
    code: str
    name: str
    level_name: str
    parent_id: int | None
    manager_id: int | None
    children: list[int] = field(default_factory=list)

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass
class Hierarchy:
    plan: Plan
    nodes: dict[int, Node]
    by_code: dict[str, int]

    def path(self, node_id: int) -> list[Node]:
        chain = []
        current: int | None = node_id
        while current is not None:
            node = self.nodes[current]
            chain.append(node)
            current = node.parent_id
        return chain[::-1]

    def subtree(self, node_id: int) -> list[int]:
        out, stack = [], [node_id]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(self.nodes[current].children)
        return out


def _hierarchy(plan: Plan) -> Hierarchy:
    nodes = {
        row["id"]: Node(
            row["id"], row["code"], row["name"], row["level_name"], row["parent_id"], row["manager_id"]
        )
        for row in Territory.objects.filter(plan=plan)
        .order_by("code")
        .values("id", "code", "name", "level_name", "parent_id", "manager_id")
    }
    for node in nodes.values():
        if node.parent_id in nodes:
            nodes[node.parent_id].children.append(node.id)
    return Hierarchy(plan=plan, nodes=nodes, by_code={n.code: n.id for n in nodes.values()})


def _code_map(display: Hierarchy, other: Hierarchy) -> dict[int, int]:
    """Territory id in `other` → the display territory with the same code, or the nearest
    ancestor's match; territories with no match anywhere up their path are left out."""
    if other.plan.pk == display.plan.pk:
        return {pk: pk for pk in display.nodes}
    mapping = {}
    for pk in other.nodes:
        for node in reversed(other.path(pk)):
            if node.code in display.by_code:
                mapping[pk] = display.by_code[node.code]
                break
    return mapping


def _plans_over(start: dt.date, through: dt.date) -> list[tuple[Plan, dt.date, dt.date]]:
    """Published plans in effect on some day of start..through, with the days each covers."""
    plans = (
        Plan.objects.filter(
            status__in=[PlanStatus.ACTIVE, PlanStatus.ARCHIVED],
            published_at__isnull=False,
            effective_from__lte=through,
        )
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=start))
        .order_by("effective_from")
    )
    out = []
    for plan in plans:
        d_from = max(start, plan.effective_from)
        d_to = min(through, plan.effective_to - dt.timedelta(days=1)) if plan.effective_to else through
        if d_from <= d_to:
            out.append((plan, d_from, d_to))
    return out


# ------------------------------------------------------------------------------------------ context


@dataclass
class Scope:
    """Who is looking, at which plan, and what of it they may see."""

    user: object
    window: Window
    display: Hierarchy
    visible: set[int] | None  # display territory ids; None = all
    own_rep_id: int | None
    quota_plan: QuotaPlan | None
    component: str | None

    @property
    def sees_whole_plan(self) -> bool:
        """Every territory is visible (a planner, or the manager of the top): filters can go."""
        return self.visible is None or self.visible.issuperset(self.display.nodes)

    def can_see(self, node_id: int) -> bool:
        return self.visible is None or node_id in self.visible

    def roots(self) -> list[int]:
        nodes = self.display.nodes
        if self.visible is None:
            return sorted((n.id for n in nodes.values() if n.parent_id is None), key=lambda i: nodes[i].code)
        return sorted(
            (i for i in self.visible if i in nodes and nodes[i].parent_id not in self.visible),
            key=lambda i: nodes[i].code,
        )

    def sees_all_reps_of(self, leaf_id: int) -> bool:
        """Planners, and managers of the leaf or an ancestor, see every rep of a leaf; a rep only
        themselves."""
        if self.visible is None:
            return True
        user_id = getattr(self.user, "pk", None)
        return any(node.manager_id == user_id for node in self.display.path(leaf_id))


def _quota_plan_for(user, window: Window, display_plan: Plan) -> QuotaPlan | None:
    if window.fiscal_year is None:
        return None
    plans = QuotaPlan.objects.filter(fiscal_year=window.fiscal_year).select_related("territory_plan")
    if not user.sees_everything:
        plans = plans.exclude(status=QuotaPlanStatus.DRAFT)
    rank = {QuotaPlanStatus.ACTIVE: 0, QuotaPlanStatus.APPROVED: 1, QuotaPlanStatus.DRAFT: 2}
    candidates = sorted(
        (p for p in plans if p.status != QuotaPlanStatus.ARCHIVED),
        key=lambda p: (rank.get(p.status, 3), p.territory_plan_id != display_plan.pk, -p.pk),
    )
    return candidates[0] if candidates else None


def scope_build(*, user, window: Window, component: str | None = None) -> Scope | None:
    """The display plan (in effect at the window's as-of date), what the user sees of it and the
    quota plan of the fiscal year. None when no published plan covers the window."""
    if component and component not in Component.values:
        raise ApplicationError(
            f"Unknown component {component!r}.", {"component": [f"use one of {', '.join(Component.values)}"]}
        )
    plan = plan_active_on(date=window.through) or plan_active_on(date=window.start)
    if plan is None:
        covering = _plans_over(window.start, window.end)
        plan = covering[-1][0] if covering else None
    if plan is None or not user.is_authenticated:
        return None
    visible = visible_territory_ids(user=user, plan=plan)
    rep = Rep.objects.filter(user_id=user.pk).only("pk").first() if user.pk else None
    return Scope(
        user=user,
        window=window,
        display=_hierarchy(plan),
        visible=None if visible is None else set(visible),
        own_rep_id=rep.pk if rep else None,
        quota_plan=_quota_plan_for(user, window, plan),
        component=component or None,
    )


# ------------------------------------------------------------------------------------------ credits


@dataclass
class Credits:
    """Booked amounts by display territory, and by (display territory, rep) through shares, per
    month and component."""

    territory: dict[int, dict[tuple[dt.date, str], list]] = field(default_factory=dict)
    rep: dict[tuple[int, int], dict[tuple[dt.date, str], float]] = field(default_factory=dict)
    plans: list[dict] = field(default_factory=list)


def _crediting_plans(scope: Scope, start: dt.date, through: dt.date):
    """[(plan, from, to, {plan territory id: display territory id})] for the window."""
    out = []
    for plan, d_from, d_to in _plans_over(start, through):
        other = scope.display if plan.pk == scope.display.plan.pk else _hierarchy(plan)
        mapping = _code_map(scope.display, other)
        if scope.visible is not None:
            mapping = {k: v for k, v in mapping.items() if v in scope.visible}
        out.append((plan, d_from, d_to, mapping))
    return out


def credits_collect(scope: Scope) -> Credits:
    """One query for the fiscal year through the as-of date, grouped by month (pacing, the trend and
    any month/quarter inside it read from the same rows)."""
    window = scope.window
    credits = Credits()
    crediting = _crediting_plans(scope, window.year_start, window.through)
    if not crediting:
        return credits
    rows = credit_cells(year_start=window.year_start, through=window.through)
    mappings = {p.pk: m for p, _, _, m in crediting}
    shares: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for territory_id, rep_id, share in TerritoryMembership.objects.filter(
        territory__plan_id__in=list(mappings)
    ).values_list("territory_id", "rep_id", "share"):
        shares[territory_id].append((rep_id, float(share)))
    wanted_component = scope.component
    by_territory, by_rep = credits.territory, credits.rep
    no_shares: list[tuple[int, float]] = []
    for plan_id, territory_id, month, component, amount, count in rows:
        mapping = mappings.get(plan_id)
        target = mapping.get(territory_id) if mapping is not None else None
        if target is None or (wanted_component and component != wanted_component):
            continue
        key = (month, component)
        cells = by_territory.get(target)
        if cells is None:
            cells = by_territory[target] = {}
        cell = cells.get(key)
        if cell is None:
            cells[key] = [amount, count]
        else:
            cell[0] += amount
            cell[1] += count
        for rep_id, share in shares.get(territory_id, no_shares):
            rep_cells = by_rep.setdefault((target, rep_id), {})
            rep_cells[key] = rep_cells.get(key, 0.0) + amount * share
    credits.plans = [
        {"id": p.pk, "name": p.name, "from": f.isoformat(), "to": t.isoformat()} for p, f, t, _ in crediting
    ]
    return credits


# A snapshot never counts its own transaction as visible; rows that transaction wrote before the
# computation (id up to last_change_id) were seen by it all the same.
_UNSEEN = """(d.id > {last} OR (NOT pg_visible_in_snapshot(d.xact, {snapshot}::pg_snapshot)
                          AND d.xact::text IS DISTINCT FROM NULLIF({xact}, '')))"""
# Drop caches nobody has brought up to date for two days (yesterday's "through" dates), then the
# change rows every remaining cache has seen. A cache may keep a fresh answer over writes it does
# not depend on (see `ignores` below), so those rows stay until it next stores an answer.
_UNSEEN_BY_CACHE = _UNSEEN.format(last="c.last_change_id", snapshot="c.snapshot", xact="c.xact")
_CACHE_PRUNE_SQL = f"""
DELETE FROM analytics_readcache c WHERE c.updated < now() - interval '2 days' AND EXISTS (
    SELECT 1 FROM analytics_datachange d WHERE {_UNSEEN_BY_CACHE}
);
DELETE FROM analytics_datachange d WHERE NOT EXISTS (
    SELECT 1 FROM analytics_readcache c WHERE {_UNSEEN_BY_CACHE}
);
"""
_UNSEEN_BY_ROW = _UNSEEN.format(last="%(last)s", snapshot="%(snapshot)s", xact="%(xact)s")
# A write that named the first booking day whose credit it may change (day_from; day_to the last, or
# NULL for every day after): bookings by their dates (analytics migration 0004), moves, assignments
# and publications by the rules of migration 0006.
_CREDIT_DAYS = "(d.day_from IS NOT NULL)"

# What a cached read does not depend on, as SQL over analytics_datachange d (migrations 0004-0006
# name the table, plans and credited days of each write; a row naming nothing matters to every read).
# Credits: account attributes (a deleted account's bookings and assignments go with their own
# writes), and writes whose credited days all fall outside the cached year through `through`: edits
# of draft scenarios, lock toggles and version bumps name no day at all (9999-12-31).
CREDITS_IGNORE = """(d.table_name = 'accounts_account'
    OR d.day_from > %(through)s OR d.day_to < %(year_start)s)"""
# A plan's territory balance: bookings, the change log, and other plans and their assignments.
BALANCE_IGNORE = """(d.table_name IN ('quotas_booking', 'territories_change')
    OR (d.table_name IN ('territories_plan', 'territories_accountassignment') AND d.plan_ids IS NOT NULL
        AND NOT (%(plan)s = ANY(d.plan_ids))))"""

_CACHE_LOCK_PREFIX = "tessera.readcache:"


def _unseen_params(cache, params: dict | None) -> dict:
    return {**(params or {}), "last": cache.last_change_id, "snapshot": cache.snapshot, "xact": cache.xact}


def cached_read(key: str, compute, *, ignores: str = "false", params: dict | None = None, refresh_days=None):
    """`compute()`'s JSON-able answer, from analytics.models.ReadCache while no write it depends on
    came after it; computed and stored otherwise. `ignores` is an SQL condition on the change row
    `d` naming writes that cannot change the answer (with `params`). When the only other writes
    named the booking days they may change and `refresh_days` is given, `refresh_days(value, first
    day, last day or None for every day after)` brings the stored answer up to date instead (only
    those days' bookings are credited again).

    One computation per key at a time (a PostgreSQL advisory lock on the key): a dashboard opened
    while the worker re-warms the cache (analytics.services.read_caches_warm) waits for that answer
    instead of running the same query beside it on the same two cores."""
    from .models import ReadCache

    # A change row naming no table (NULL in every test) matters to every read: hence COALESCE.
    ignored = f"COALESCE({ignores}, false)"
    stale_sql = (
        f"SELECT EXISTS (SELECT 1 FROM analytics_datachange d WHERE {_UNSEEN_BY_ROW} AND NOT {ignored})"
    )
    cache = ReadCache.objects.filter(key=key).first()
    with connection.cursor() as cursor:
        if cache is not None:
            cursor.execute(stale_sql, _unseen_params(cache, params))
            if not cursor.fetchone()[0]:
                return cache.value
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Held to the end of the transaction that stores the answer, so a waiter finds it.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_CACHE_LOCK_PREFIX + key])
            cache = ReadCache.objects.filter(key=key).first()
            # Read before computing: a write committed later is newer than this answer, whatever
            # the computation happened to see of it.
            cursor.execute(
                "SELECT pg_current_snapshot()::text, COALESCE(MAX(id), 0),"
                " COALESCE(pg_current_xact_id_if_assigned()::text, '') FROM analytics_datachange"
            )
            snapshot, last_id, xact = cursor.fetchone()
            days = None
            if cache is not None:
                days_only = _CREDIT_DAYS if refresh_days is not None else "false"
                cursor.execute(
                    f"""SELECT count(*) FILTER (WHERE NOT {ignored} AND NOT {days_only}),
                               min(d.day_from) FILTER (WHERE NOT {ignored} AND {days_only}),
                               max(d.day_to) FILTER (WHERE NOT {ignored} AND {days_only}),
                               bool_or(d.day_to IS NULL) FILTER (WHERE NOT {ignored} AND {days_only})
                        FROM analytics_datachange d WHERE {_UNSEEN_BY_ROW}""",
                    _unseen_params(cache, params),
                )
                others, first_day, last_day, open_ended = cursor.fetchone()
                if not others:
                    if first_day is None:
                        return cache.value  # another process brought it up to date meanwhile
                    days = (first_day, None if open_ended else last_day)
        started = time.perf_counter()
        value = compute() if days is None else refresh_days(cache.value, *days)
        ReadCache.objects.update_or_create(
            key=key,
            defaults={
                "snapshot": snapshot,
                "last_change_id": last_id,
                "xact": xact,
                "seconds": round(time.perf_counter() - started, 3),
                "value": value,
            },
        )
        with connection.cursor() as cursor:
            cursor.execute(_CACHE_PRUNE_SQL)
    return value


def credit_cells(*, year_start: dt.date, through: dt.date) -> list[tuple]:
    """Every booking from year_start through `through`, credited in the plan in effect on its date:
    [(plan_id, territory_id, month, component, amount, bookings)], unscoped (callers map and filter)."""

    def compute(start: dt.date = year_start, end: dt.date = through) -> list[list]:
        crediting = [(plan, d_from, d_to, {}) for plan, d_from, d_to in _plans_over(start, end)]
        return [
            [plan_id, territory_id, month.isoformat(), component, round(float(amount), 2), count]
            for plan_id, territory_id, month, component, amount, count in _credit_rows(crediting)
        ]

    def refresh_days(value: list[list], first_day: dt.date, last_day: dt.date | None) -> list[list]:
        # The writes changed only the credit of those days (bookings of those dates, owners from a
        # move's day on): the months holding them are credited again, every other month's are kept.
        start = max(year_start, first_day.replace(day=1))
        end = through if last_day is None else min(through, _month_bounds(last_day)[1])
        if start > end:
            return value
        first_month, last_month = start.replace(day=1).isoformat(), end.replace(day=1).isoformat()
        kept = [cell for cell in value if not first_month <= cell[2] <= last_month]
        return kept + compute(start, end)

    cells = cached_read(
        f"credits:{year_start.isoformat()}:{through.isoformat()}",
        compute,
        ignores=CREDITS_IGNORE,
        params={"year_start": year_start, "through": through},
        refresh_days=refresh_days,
    )
    return [(p, t, dt.date.fromisoformat(m), c, a, n) for p, t, m, c, a, n in cells]


# ------------------------------------------------------------------------------------------- quotas


@dataclass
class QuotaBook:
    """Quota rows per owner and component: owner = display territory id or (territory, rep). Monthly
    targets are built on first use: a large plan has tens of thousands of rows and a page needs
    only the owners it shows."""

    raw: dict[object, dict[str, list[tuple]]] = field(default_factory=dict)
    linear: set = field(default_factory=set)  # owners whose pacing had no monthly rows
    built: dict[object, dict[str, list[metrics.MonthTarget]] | None] = field(default_factory=dict)

    def get(self, owner) -> dict[str, list[metrics.MonthTarget]] | None:
        if owner not in self.built:
            self.built[owner] = self._build(owner)
        return self.built[owner]

    def _build(self, owner) -> dict[str, list[metrics.MonthTarget]] | None:
        components = self.raw.get(owner)
        if not components:
            return None
        out = {}
        for component, groups in components.items():
            rows = [row for group in groups for row in zip(*group, strict=True)]
            months = [metrics.MonthTarget(s, e, float(a)) for k, s, e, a in rows if k == PeriodKind.MONTH]
            if not months:
                self.linear.add(owner)
                coarse = [r for r in rows if r[0] == PeriodKind.QUARTER] or [
                    r for r in rows if r[0] == PeriodKind.YEAR
                ]
                months = [m for _, s, e, a in coarse for m in metrics.linear_months(s, e, float(a))]
            # Two territories of an old plan may map onto one display territory: add them up.
            merged: dict[dt.date, metrics.MonthTarget] = {}
            for m in months:
                if m.start in merged:
                    m = metrics.MonthTarget(m.start, m.end, merged[m.start].amount + m.amount)
                merged[m.start] = m
            out[component] = sorted(merged.values(), key=lambda m: m.start)
        return out


def quotas_collect(scope: Scope) -> QuotaBook:
    """The quota plan's targets mapped onto the display hierarchy. Monthly rows give the seasonality;
    an owner without them is spread linearly over its quarter or year rows."""
    book = QuotaBook()
    if scope.quota_plan is None:
        return book
    qp = scope.quota_plan
    other = scope.display if qp.territory_plan_id == scope.display.plan.pk else _hierarchy(qp.territory_plan)
    mapping = _code_map(scope.display, other)
    # Grouped in SQL, one row per owner and component with its periods as arrays: a plan of a
    # thousand territories has some 70,000 quota rows, too many to loop over in Python per request.
    sql = f"""
        SELECT q.territory_id, q.rep_id, q.component,
               array_agg(p.kind), array_agg(p.start), array_agg(p."end"), array_agg(q.amount)
        FROM {Quota._meta.db_table} q JOIN {FiscalPeriod._meta.db_table} p ON p.id = q.period_id
        WHERE q.quota_plan_id = %s AND q.territory_id IS NOT NULL AND p.start >= %s AND p."end" <= %s
        {"AND q.component = %s" if scope.component else ""}
        GROUP BY q.territory_id, q.rep_id, q.component
    """
    params: list = [qp.pk, scope.window.year_start, scope.window.year_end]
    if scope.component:
        params.append(scope.component)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    everything = scope.visible is None
    for territory_id, rep_id, component, kinds, starts, ends, amounts in rows:
        target = mapping.get(territory_id)
        if target is None or not (everything or target in scope.visible):
            continue
        owner = target if rep_id is None else (target, rep_id)
        book.raw.setdefault(owner, {}).setdefault(component, []).append((kinds, starts, ends, amounts))
    return book


# ----------------------------------------------------------------------------------------- figures


def _booked(cells: dict, start: dt.date, through: dt.date) -> tuple[dict[str, float], int]:
    by_component: dict[str, float] = defaultdict(float)
    count = 0
    first_month = start.replace(day=1)
    for (month, component), value in cells.items():
        if first_month <= month <= through:
            if isinstance(value, list):
                by_component[component] += value[0]
                count += value[1]
            else:
                by_component[component] += value
    return dict(by_component), count


def _quota(months_by_component: dict | None, window: Window) -> tuple[dict[str, float], float | None]:
    """Quota of the window's period per component and what was expected by its as-of date."""
    if not months_by_component:
        return {}, None
    quota: dict[str, float] = {}
    expected = 0.0
    for component, months in months_by_component.items():
        inside = [m for m in months if m.start >= window.start and m.end <= window.end]
        quota[component] = sum(m.amount for m in inside)
        expected += metrics.expected_to_date(inside, window.through)
    return quota, expected


def _figures(booked: dict[str, float], count: int, quota: dict[str, float], expected: float | None) -> dict:
    total_booked = round(sum(booked.values()), 2)
    total_quota = round(sum(quota.values()), 2) if quota else None
    components = sorted(set(booked) | set(quota))
    return {
        "booked": total_booked,
        "bookings": count,
        "quota": total_quota,
        "attainment": metrics.ratio(total_booked, total_quota),
        "expected": round(expected, 2) if expected is not None else None,
        "pacing": metrics.pacing(total_booked, expected) if expected is not None else None,
        "gap_to_pace": round(total_booked - expected, 2) if expected is not None else None,
        "by_component": {
            c: {"booked": round(booked.get(c, 0.0), 2), "quota": round(quota[c], 2) if c in quota else None}
            for c in components
        },
    }


class Report:
    """Attainment figures over one scope: territories at any level, reps and the trend."""

    def __init__(self, scope: Scope):
        self.scope = scope
        self.credits = credits_collect(scope)
        self.quotas = quotas_collect(scope)
        self._subtree_cells: dict[int, dict] = {}
        self._members: dict[int, list] | None = None

    # Booked cells for a territory's whole subtree (post-order sums, memoised).
    def cells(self, node_id: int) -> dict:
        if node_id not in self._subtree_cells:
            total: dict = {}
            for key, (amount, count) in self.credits.territory.get(node_id, {}).items():
                total[key] = [amount, count]
            for child in self.scope.display.nodes[node_id].children:
                for key, (amount, count) in self.cells(child).items():
                    cell = total.setdefault(key, [0.0, 0])
                    cell[0] += amount
                    cell[1] += count
            self._subtree_cells[node_id] = total
        return self._subtree_cells[node_id]

    def quota_months(self, node_id: int) -> dict[str, list[metrics.MonthTarget]] | None:
        """The node's own quota, else the sum of its children's (allocation writes every level,
        but a display territory reached only through code matching may have none of its own)."""
        own = self.quotas.get(node_id)
        if own:
            return own
        children = [self.quota_months(c) for c in self.scope.display.nodes[node_id].children]
        children = [c for c in children if c]
        if not children:
            return None
        merged: dict[str, dict[dt.date, metrics.MonthTarget]] = {}
        for child in children:
            for component, months in child.items():
                slot = merged.setdefault(component, {})
                for m in months:
                    prior = slot.get(m.start)
                    slot[m.start] = (
                        m if prior is None else metrics.MonthTarget(m.start, m.end, prior.amount + m.amount)
                    )
        return {c: sorted(v.values(), key=lambda m: m.start) for c, v in merged.items()}

    def territory_row(self, node_id: int) -> dict:
        node = self.scope.display.nodes[node_id]
        window = self.scope.window
        booked, count = _booked(self.cells(node_id), window.start, window.through)
        quota, expected = _quota(self.quota_months(node_id), window)
        return {
            "kind": "territory",
            "id": node.id,
            "code": node.code,
            "name": node.name,
            "level_name": node.level_name,
            "is_leaf": node.is_leaf,
            "path": [n.code for n in self.scope.display.path(node_id)],
            **_figures(booked, count, quota, expected),
            "pacing_basis": "linear" if node_id in self.quotas.linear else "seasonality",
        }

    def reps_of(self, leaf_id: int) -> list[tuple[int, str, str, float, float]]:
        if self._members is None:
            self._members = defaultdict(list)
            memberships = TerritoryMembership.objects.filter(territory__plan=self.scope.display.plan)
            for m in memberships.select_related("rep").order_by("territory_id", "role", "rep__name"):
                self._members[m.territory_id].append(m)
        sees_all = self.scope.sees_all_reps_of(leaf_id)
        return [
            (m.rep_id, m.rep.name, m.role, float(m.share), float(m.rep.capacity_fte))
            for m in self._members.get(leaf_id, [])
            if sees_all or m.rep_id == self.scope.own_rep_id
        ]

    def rep_row(self, leaf_id: int, rep_id: int, name: str, role: str, share: float) -> dict:
        window = self.scope.window
        booked, _ = _booked(self.credits.rep.get((leaf_id, rep_id), {}), window.start, window.through)
        quota, expected = _quota(self.quotas.get((leaf_id, rep_id)), window)
        node = self.scope.display.nodes[leaf_id]
        row = _figures(booked, 0, quota, expected)
        row.pop("bookings")
        return {
            "kind": "rep",
            "id": rep_id,
            "code": node.code,
            "name": name,
            "level_name": LEVEL_REP,
            "is_leaf": True,
            "territory_id": leaf_id,
            "role": role,
            "share": share,
            "path": [n.code for n in self.scope.display.path(leaf_id)],
            **row,
            "pacing_basis": "linear" if (leaf_id, rep_id) in self.quotas.linear else "seasonality",
        }

    def trend(self, node_ids: list[int]) -> dict:
        """Booked and quota per month of the fiscal year over `node_ids` together, with running sums."""
        window = self.scope.window
        months = []
        cursor = window.year_start.replace(day=1)
        while cursor <= window.year_end:
            months.append(cursor)
            cursor = (cursor.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        booked = dict.fromkeys(months, 0.0)
        quota = dict.fromkeys(months, 0.0)
        has_quota = False
        for node_id in node_ids:
            for (month, _), (amount, _count) in self.cells(node_id).items():
                if month in booked:
                    booked[month] += amount
            for component_months in (self.quota_months(node_id) or {}).values():
                for m in component_months:
                    key = m.start.replace(day=1)
                    if key in quota:
                        quota[key] += m.amount
                        has_quota = True
        cumulative_booked, cumulative_quota, run_b, run_q = [], [], 0.0, 0.0
        for month in months:
            run_b += booked[month]
            run_q += quota[month]
            cumulative_booked.append(round(run_b, 2) if month <= window.through else None)
            cumulative_quota.append(round(run_q, 2))
        return {
            "months": [m.strftime("%Y-%m") for m in months],
            "booked": [round(booked[m], 2) if m <= window.through else None for m in months],
            "quota": [round(quota[m], 2) for m in months] if has_quota else None,
            "cumulative_booked": cumulative_booked,
            "cumulative_quota": cumulative_quota if has_quota else None,
        }


def _goals(scope: Scope, node_ids: list[int]) -> dict[int, list[dict]]:
    if scope.quota_plan is None or not node_ids:
        return {}
    qp = scope.quota_plan
    other = scope.display if qp.territory_plan_id == scope.display.plan.pk else _hierarchy(qp.territory_plan)
    mapping = _code_map(scope.display, other)
    out: dict[int, list[dict]] = defaultdict(list)
    wanted = set(node_ids)
    for goal in ActivityGoal.objects.filter(quota_plan=qp).order_by("metric"):
        target = mapping.get(goal.territory_id)
        # Only a goal set on this very territory (matched by code), not an ancestor's.
        if target in wanted and other.nodes[goal.territory_id].code == scope.display.nodes[target].code:
            out[target].append(
                {"metric": goal.metric, "label": goal.get_metric_display(), "target": float(goal.target)}
            )
    return dict(out)


def _node_ref(node: Node) -> dict:
    return {"id": node.id, "code": node.code, "name": node.name, "level_name": node.level_name}


def _empty_attainment(window: Window, level: str | None) -> dict:
    return {
        "period": window.as_dict(),
        "plan": None,
        "quota_plan": None,
        "component": None,
        "parent": None,
        "breadcrumbs": [],
        "level": level,
        "levels": [],
        "rows": [],
        "totals": None,
        "goals": [],
        "trend": None,
        "crediting_plans": [],
        "uncredited": None,
    }


def attainment_report(
    *,
    user,
    window: Window,
    territory_id: int | None = None,
    level: str | None = None,
    component: str | None = None,
) -> dict:
    """Rows of attainment and pacing: the children of `territory_id` (the user's top territories
    when not given), the reps of a leaf, or every visible node at `level` (a level name such as
    region or district, or "rep"); plus totals, the monthly trend, goals and the drill path."""
    scope = scope_build(user=user, window=window, component=component)
    if scope is None:
        return _empty_attainment(window, level)
    return _attainment(Report(scope), territory_id, level)


def dashboard_report(
    *,
    user,
    window: Window,
    territory_id: int | None = None,
    level: str | None = None,
    component: str | None = None,
) -> dict:
    """Everything the dashboard page shows, from one crediting query: the attainment rows asked for,
    and the fairness figures over the reps of the same subtree."""
    scope = scope_build(user=user, window=window, component=component)
    if scope is None:
        return {"attainment": _empty_attainment(window, level), "fairness": None}
    report = Report(scope)
    attainment = _attainment(report, territory_id, level)
    territory_id = attainment["parent"]["id"] if attainment["parent"] else None
    reps = attainment if attainment["level"] == LEVEL_REP else _attainment(report, territory_id, LEVEL_REP)
    return {"attainment": attainment, "fairness": _fairness(scope, reps, territory_id)}


def _attainment(report: Report, territory_id: int | None, level: str | None) -> dict:
    scope = report.scope
    window = scope.window
    nodes = scope.display.nodes
    parent = None
    if territory_id is not None:
        if territory_id not in nodes or not scope.can_see(territory_id):
            raise ApplicationError(
                "No such territory in the plan you can see.", {"territory": [str(territory_id)]}, status=404
            )
        parent = nodes[territory_id]
    else:
        # One top territory (a manager's region): start inside it, its children are the rows.
        roots = scope.roots()
        if len(roots) == 1 and not nodes[roots[0]].is_leaf and not level:
            parent = nodes[roots[0]]
    depth: dict[str, int] = {}
    for n in nodes.values():
        if scope.can_see(n.id):
            level_depth = len(scope.display.path(n.id))
            depth[n.level_name] = min(depth.get(n.level_name, level_depth), level_depth)
    # Top of the hierarchy first: region, district, territory.
    levels = sorted(depth, key=lambda name: (depth[name], name))
    if level and level != LEVEL_REP and level not in levels:
        raise ApplicationError(
            f"Unknown level {level!r}.", {"level": [f"use one of {', '.join([*levels, LEVEL_REP])}"]}
        )
    within = set(scope.display.subtree(parent.id)) if parent else None
    rows: list[dict] = []
    top_ids: list[int]
    if level == LEVEL_REP or (parent is not None and parent.is_leaf and not level):
        leaves = [
            i for i, n in nodes.items() if n.is_leaf and scope.can_see(i) and (within is None or i in within)
        ]
        for leaf in sorted(leaves, key=lambda i: nodes[i].code):
            for rep_id, name, role, share, _fte in report.reps_of(leaf):
                rows.append(report.rep_row(leaf, rep_id, name, role, share))
        top_ids = [parent.id] if parent else scope.roots()
        shown_level = LEVEL_REP
    elif level:
        ids = [
            i
            for i, n in nodes.items()
            if n.level_name == level and scope.can_see(i) and (within is None or i in within)
        ]
        ids.sort(key=lambda i: (scope.display.path(i)[0].code, nodes[i].code))
        rows = [report.territory_row(i) for i in ids]
        top_ids = [parent.id] if parent else scope.roots()
        shown_level = level
    else:
        ids = [c for c in parent.children if scope.can_see(c)] if parent else scope.roots()
        rows = [report.territory_row(i) for i in ids]
        top_ids = [parent.id] if parent else ids
        shown_level = nodes[ids[0]].level_name if ids else None
    # A rep's goals are those of the territory they sell in.
    goals = _goals(scope, [r["id"] if r["kind"] == "territory" else r["territory_id"] for r in rows])
    for row in rows:
        row["goals"] = goals.get(row["id"] if row["kind"] == "territory" else row["territory_id"], [])
    totals = _totals(report, top_ids)
    breadcrumbs = []
    if parent is not None:
        breadcrumbs = [_node_ref(n) for n in scope.display.path(parent.id) if scope.can_see(n.id)]
    return {
        "period": window.as_dict(),
        "plan": {"id": scope.display.plan.pk, "name": scope.display.plan.name},
        "quota_plan": (
            {"id": scope.quota_plan.pk, "name": scope.quota_plan.name, "status": scope.quota_plan.status}
            if scope.quota_plan
            else None
        ),
        "component": scope.component,
        "parent": _node_ref(parent) if parent else None,
        "breadcrumbs": breadcrumbs,
        "level": shown_level,
        "levels": [*levels, LEVEL_REP],
        "rows": rows,
        "totals": totals,
        "goals": _goals(scope, [parent.id]).get(parent.id, []) if parent else [],
        "trend": report.trend(top_ids),
        "crediting_plans": report.credits.plans,
        "uncredited": _uncredited(scope, report) if scope.visible is None else None,
    }


def _totals(report: Report, top_ids: list[int]) -> dict:
    window = report.scope.window
    booked: dict[str, float] = defaultdict(float)
    count = 0
    quota: dict[str, float] = defaultdict(float)
    expected = None
    for node_id in top_ids:
        b, c = _booked(report.cells(node_id), window.start, window.through)
        for k, v in b.items():
            booked[k] += v
        count += c
        q, e = _quota(report.quota_months(node_id), window)
        for k, v in q.items():
            quota[k] += v
        if e is not None:
            expected = (expected or 0.0) + e
    return _figures(dict(booked), count, dict(quota), expected)


def _uncredited(scope: Scope, report: Report) -> dict:
    """Bookings of the window that no territory was credited with: no published plan in effect on
    the date, or the account had no owner in it. Shown to planners, who can fix either."""
    window = scope.window
    bookings = Booking.objects.filter(booked_on__gte=window.start, booked_on__lte=window.through)
    if scope.component:
        bookings = bookings.filter(component=scope.component)
    total = bookings.aggregate(amount=Sum("amount"), n=Count("id"))
    credited_amount = 0.0
    credited_count = 0
    for node_id in scope.roots():
        b, c = _booked(report.cells(node_id), window.start, window.through)
        credited_amount += sum(b.values())
        credited_count += c
    amount = float(total["amount"] or 0) - credited_amount
    return {"amount": round(amount, 2), "bookings": (total["n"] or 0) - credited_count}


# ----------------------------------------------------------------------------------- account drill


def attainment_accounts(
    *, user, window: Window, territory_id: int, rep_id: int | None = None, limit: int = 500
) -> dict:
    """The accounts behind a leaf territory's (or one of its reps') bookings in the window, largest
    first: the last step of the drill-down."""
    scope = scope_build(user=user, window=window)
    if scope is None or territory_id not in scope.display.nodes or not scope.can_see(territory_id):
        raise ApplicationError(
            "No such territory in the plan you can see.", {"territory": [str(territory_id)]}, status=404
        )
    node = scope.display.nodes[territory_id]
    if not node.is_leaf:
        raise ApplicationError(
            f"{node.code} is not a leaf territory: accounts belong to leaves.", {"territory": ["not a leaf"]}
        )
    if rep_id is not None and not scope.sees_all_reps_of(territory_id) and rep_id != scope.own_rep_id:
        raise ApplicationError(
            "No such rep in the territories you can see.", {"rep": [str(rep_id)]}, status=404
        )
    crediting = _crediting_plans(scope, window.start, window.through)
    sources = {pk for _, _, _, m in crediting for pk, target in m.items() if target == territory_id}
    rows: list = []
    if crediting and sources:
        rows = _owned_rows(_ACCOUNTS_SQL, crediting, sorted(sources), None)
    shares: dict[int, float] = {}
    if rep_id is not None:
        shares = dict(
            TerritoryMembership.objects.filter(territory_id__in=sources, rep_id=rep_id).values_list(
                "territory_id", "share"
            )
        )
    per_account: dict[int, list] = {}
    for _plan_id, account_id, source, amount, count, last in rows:
        factor = 1.0 if rep_id is None else float(shares.get(source, 0))
        if factor == 0:
            continue
        cell = per_account.setdefault(account_id, [0.0, 0, last])
        cell[0] += float(amount) * factor
        cell[1] += count
        cell[2] = max(cell[2], last)
    ordered = sorted(per_account.items(), key=lambda kv: (-kv[1][0], kv[0]))
    accounts = {
        a.pk: a
        for a in Account.objects.filter(pk__in=[pk for pk, _ in ordered[:limit]]).only(
            "pk", "external_id", "name", "city", "state", "segment"
        )
    }
    rep = Rep.objects.filter(pk=rep_id).first() if rep_id else None
    return {
        "period": window.as_dict(),
        "territory": _node_ref(node),
        "rep": {"id": rep.pk, "name": rep.name} if rep else None,
        "breadcrumbs": [_node_ref(n) for n in scope.display.path(territory_id) if scope.can_see(n.id)],
        "total_accounts": len(ordered),
        "booked": round(sum(v[0] for _, v in ordered), 2),
        "accounts": [
            {
                "id": pk,
                "external_id": accounts[pk].external_id,
                "name": accounts[pk].name,
                "city": accounts[pk].city,
                "state": accounts[pk].state,
                "segment": accounts[pk].segment,
                "booked": round(v[0], 2),
                "bookings": v[1],
                "last_booked_on": v[2].isoformat(),
            }
            for pk, v in ordered[:limit]
            if pk in accounts
        ],
    }


# ------------------------------------------------------------------------------------------ fairness


def territory_balance(*, plan: Plan, territory_ids: list[int] | None) -> dict[int, dict[str, float]]:
    """Accounts, revenue, potential and workload hours of each leaf territory (primary owners)."""

    def compute() -> list[list]:
        rows = (
            AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY)
            .values("territory_id")
            .annotate(
                accounts=Count("id"),
                revenue=Sum("account__revenue"),
                potential=Sum("account__potential"),
                workload=Sum("account__workload_hours"),
            )
            .order_by("territory_id")
        )
        return [[row["territory_id"], *(float(row[m] or 0) for m in BALANCE_METRICS)] for row in rows]

    wanted = None if territory_ids is None else set(territory_ids)
    return {
        row[0]: dict(zip(BALANCE_METRICS, row[1:], strict=True))
        for row in cached_read(
            f"balance:{plan.pk}", compute, ignores=BALANCE_IGNORE, params={"plan": plan.pk}
        )
        if wanted is None or row[0] in wanted
    }


def fairness_report(
    *, user, window: Window, territory_id: int | None = None, level: str | None = None
) -> dict:
    """The distribution of attainment (reps by default, or territories at `level`) with the fairness
    figures, the balance of the leaf territories in scope and each rep's workload against capacity."""
    scope = scope_build(user=user, window=window)
    if scope is None:
        return _fairness(None, _empty_attainment(window, level), territory_id)
    attainment = _attainment(Report(scope), territory_id, level or LEVEL_REP)
    return _fairness(scope, attainment, attainment["parent"]["id"] if attainment["parent"] else None)


def _fairness(scope: Scope | None, report: dict, territory_id: int | None) -> dict:
    rows = report["rows"]
    attained = [r["attainment"] for r in rows if r["attainment"] is not None]
    paced = [r["pacing"] for r in rows if r["pacing"] is not None]
    booked = [r["booked"] for r in rows]
    out = {
        "period": report["period"],
        "plan": report["plan"],
        "quota_plan": report["quota_plan"],
        "level": report["level"],
        "parent": report["parent"],
        "attainment": {
            "values": [
                {"id": r["id"], "name": r["name"], "code": r["code"], "attainment": r["attainment"]}
                for r in rows
            ],
            "distribution": metrics.distribution(attained).as_dict(),
            "histogram": {
                "edges": ATTAINMENT_EDGES,
                "counts": metrics.histogram(attained, edges=ATTAINMENT_EDGES),
            },
            "without_quota": sum(1 for r in rows if r["attainment"] is None),
        },
        "pacing": metrics.distribution(paced).as_dict(),
        "booked": metrics.distribution(booked).as_dict(),
        "balance": None,
        "workload": [],
    }
    if scope is None:
        return out
    nodes = scope.display.nodes
    within = set(scope.display.subtree(territory_id)) if territory_id else None
    leaves = [
        i for i, n in nodes.items() if n.is_leaf and scope.can_see(i) and (within is None or i in within)
    ]
    whole = scope.sees_whole_plan and territory_id is None
    balance = territory_balance(plan=scope.display.plan, territory_ids=None if whole else leaves)
    per_leaf = [
        {
            "id": i,
            "code": nodes[i].code,
            "name": nodes[i].name,
            **balance.get(i, dict.fromkeys(BALANCE_METRICS, 0.0)),
        }
        for i in sorted(leaves, key=lambda i: nodes[i].code)
    ]
    out["balance"] = {
        "territories": per_leaf,
        "metrics": {m: metrics.distribution([t[m] for t in per_leaf]).as_dict() for m in BALANCE_METRICS},
    }
    hours_per_fte = float(settings.TESSERA_HOURS_PER_FTE)
    load = rep_workloads(plan=scope.display.plan, territory_ids=None if whole else leaves, balance=balance)
    for rep_id, item in sorted(load.items(), key=lambda kv: -kv[1]["hours"]):
        if not scope.sees_all_reps_of(item["territory_ids"][0]) and rep_id != scope.own_rep_id:
            continue
        capacity = item["capacity_fte"] * hours_per_fte
        out["workload"].append(
            {
                "rep": {"id": rep_id, "name": item["name"]},
                "territories": [nodes[t].code for t in item["territory_ids"]],
                "hours": round(item["hours"], 1),
                "capacity_hours": round(capacity, 1),
                "utilisation": metrics.ratio(item["hours"], capacity),
            }
        )
    return out


def rep_workloads(
    *, plan: Plan, territory_ids: list[int] | None, balance: dict[int, dict[str, float]] | None = None
) -> dict[int, dict]:
    """Each rep's yearly workload hours in `plan`: the hours of the accounts of their territories,
    times their share (an overlay at 0.5 carries half). `balance` (territory_balance's answer for
    the same territories) saves reading the hours again."""
    memberships = TerritoryMembership.objects.filter(territory__plan=plan).select_related("rep")
    if territory_ids is not None:
        memberships = memberships.filter(territory_id__in=territory_ids)
    memberships = list(memberships.order_by("rep_id", "territory__code"))
    if balance is not None:
        hours = {t: figures["workload"] for t, figures in balance.items()}
    else:
        hours = {
            row["territory_id"]: float(row["hours"] or 0)
            for row in AccountAssignment.objects.filter(
                plan=plan, role=AssignmentRole.PRIMARY, territory_id__in={m.territory_id for m in memberships}
            )
            .values("territory_id")
            .annotate(hours=Sum("account__workload_hours"))
        }
    out: dict[int, dict] = {}
    for m in memberships:
        item = out.setdefault(
            m.rep_id,
            {
                "name": m.rep.name,
                "capacity_fte": float(m.rep.capacity_fte),
                "hours": 0.0,
                "territory_ids": [],
                "primary": False,
            },
        )
        item["hours"] += hours.get(m.territory_id, 0.0) * float(m.share)
        item["territory_ids"].append(m.territory_id)
        item["primary"] = item["primary"] or m.role == MemberRole.PRIMARY
    return out


# ------------------------------------------------------------------------------------------ warnings


def warning_list(*, user, include_resolved: bool = False):
    """Warning signs the user may see: planners all of them; a manager those about territories of
    their subtree; a rep those about themselves or their territories. Plan-wide warnings (no
    territory) only for planners."""
    from .models import WarningSign

    warnings = WarningSign.objects.select_related("plan", "territory", "rep")
    if not include_resolved:
        warnings = warnings.filter(resolved_at__isnull=True)
    if not user.is_authenticated or not user.is_active:
        return warnings.none()
    if user.sees_everything:
        return warnings
    visible = Q(pk__in=[])
    for plan_id in warnings.values_list("plan_id", flat=True).distinct():
        plan = Plan.objects.get(pk=plan_id)
        ids = visible_territory_ids(user=user, plan=plan)
        visible |= Q(plan_id=plan_id, territory_id__in=ids)
    if user.role == Role.REP:
        # A rep sees warnings about their territories and themselves, not about a colleague.
        visible &= Q(rep__isnull=True) | Q(rep__user=user)
    visible |= Q(rep__user=user)
    return warnings.filter(visible)

"""Reads behind the plan pages: headline balance figures per plan, per-territory metrics with their
targets, the difference between two scenarios, and territory outlines for the maps.

Every function is scoped like territories.selectors: it takes the requesting user and only counts
what that user may see (a manager their subtree, a rep their own territories). The API side of the
same questions (plans/{id}/metrics/, plans/{id}/diff/) lives in territories/api; these functions
serve the server-rendered pages and compute the same figures set-based, in a fixed number of
queries however many plans or territories there are."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from django.contrib.gis.db.models.functions import AsGeoJSON
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, DecimalField, Exists, F, Max, OuterRef, Q, Sum
from django.db.models.functions import Coalesce

from accounts.models import Account, Rep

from .choices import AssignmentRole, MemberRole, UnitLevel
from .models import AccountAssignment, GeoUnit, Plan, Territory, TerritoryMembership, UnitAssignment
from .selectors import visible_territory_ids

METRICS = ("accounts", "revenue", "potential", "workload")
METRIC_LABELS = {
    "accounts": "Accounts",
    "revenue": "Revenue",
    "potential": "Potential",
    "workload": "Workload (h)",
}
# The balance tolerance the planner aims for (±5%), used to flag territories on the pages.
TOLERANCE = 0.05
# Coordinates in map GeoJSON: 4 decimals is ~11 m, far finer than the simplified outlines.
GEOJSON_PRECISION = 4
OUTLINE_CACHE_SECONDS = 3600
# Dissolved outlines are simplified to ~1 km: the maps show whole territories, not county edges.
OUTLINE_SIMPLIFY_DEGREES = 0.01
FIGURES_CACHE_SECONDS = 3600
# The compare map draws at most this many moved accounts; the table and totals count all of them.
MOVED_POINTS_LIMIT = 5000


def _zero() -> dict[str, float]:
    return dict.fromkeys(METRICS, 0.0)


@dataclass
class TerritoryFigures:
    """One territory's metrics (a parent's are the sum of its visible children) and, for a leaf,
    its target and relative deviation from it."""

    id: int
    code: str
    name: str
    level_name: str
    color: str
    parent_id: int | None
    is_leaf: bool
    capacity: float = 0.0
    metrics: dict[str, float] = field(default_factory=_zero)
    target: dict[str, float] | None = None
    deviation: dict[str, float | None] | None = None
    depth: int = 0
    tolerance: float = TOLERANCE

    @property
    def worst_deviation(self) -> float | None:
        values = [abs(v) for v in (self.deviation or {}).values() if v is not None]
        return max(values) if values else None

    @property
    def outside_tolerance(self) -> bool:
        worst = self.worst_deviation
        return worst is not None and worst > self.tolerance


@dataclass
class PlanFigures:
    """A plan's figures over the territories the user may see."""

    plan: Plan
    territories: list[TerritoryFigures]
    totals: dict[str, float]
    unassigned: dict[str, float] | None  # None: the user's scope has no unassigned bucket

    @property
    def tolerance(self) -> float:
        return plan_tolerance(self.plan)

    @property
    def leaves(self) -> list[TerritoryFigures]:
        return [t for t in self.territories if t.is_leaf]

    @property
    def worst_deviation(self) -> dict | None:
        """The leaf and metric furthest from target: {"value", "metric", "code"} or None."""
        worst = None
        for leaf in self.leaves:
            for metric, value in (leaf.deviation or {}).items():
                if value is not None and (worst is None or abs(value) > abs(worst["value"])):
                    worst = {"value": value, "metric": metric, "code": leaf.code, "name": leaf.name}
        return worst

    @property
    def outside_tolerance(self) -> int:
        return sum(1 for leaf in self.leaves if leaf.outside_tolerance)


def plan_tolerance(plan: Plan) -> float:
    """The tolerance the plan was last balanced with (stored by the balance job), else ±5%; the same
    rule as the metrics API (territories.metrics.plan_tolerance)."""
    stored = plan.metrics.get("balance") if isinstance(plan.metrics, dict) else None
    value = stored.get("tolerance") if isinstance(stored, dict) else None
    if isinstance(value, int | float) and 0 < value < 1:
        return float(value)
    return TOLERANCE


def _targets(leaves: list[TerritoryFigures]) -> None:
    """Target of a leaf = total over the leaves × its primary reps' capacity share (FTE × share);
    equal shares when no leaf has a primary rep. A leaf without reps among leaves with reps gets a
    target of 0 and no deviation (it should not own anything: that is a staffing gap, not a %)."""
    if not leaves:
        return
    totals = _zero()
    for leaf in leaves:
        for metric in METRICS:
            totals[metric] += leaf.metrics[metric]
    capacity_total = sum(leaf.capacity for leaf in leaves)
    for leaf in leaves:
        share = leaf.capacity / capacity_total if capacity_total else 1 / len(leaves)
        leaf.target = {metric: totals[metric] * share for metric in METRICS}
        leaf.deviation = {
            metric: (leaf.metrics[metric] - leaf.target[metric]) / leaf.target[metric]
            if leaf.target[metric]
            else None
            for metric in METRICS
        }


def _order_tree(rows: list[TerritoryFigures]) -> list[TerritoryFigures]:
    """Depth-first by code, so parents precede their children; visible nodes whose parent is not
    visible are roots of the user's view."""
    by_parent: dict[int | None, list[TerritoryFigures]] = {}
    ids = {row.id for row in rows}
    for row in rows:
        by_parent.setdefault(row.parent_id if row.parent_id in ids else None, []).append(row)
    ordered: list[TerritoryFigures] = []

    def walk(parent_id: int | None, depth: int) -> None:
        for row in sorted(by_parent.get(parent_id, []), key=lambda r: r.code):
            row.depth = depth
            ordered.append(row)
            walk(row.id, depth + 1)

    walk(None, 0)
    return ordered


def _data_stamp() -> str:
    """A fingerprint of the account and rep rows (count and last update of each), so cached figures
    are recomputed after an import changes revenue, potential, workload or rep capacity. Plan edits
    are covered by the plan version in the cache key (every service bumps it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT (SELECT count(*) || '-' || COALESCE(extract(epoch FROM max(updated)), 0)
                        FROM {Account._meta.db_table}),
                       (SELECT count(*) || '-' || COALESCE(extract(epoch FROM max(updated)), 0)
                        FROM {Rep._meta.db_table})"""
        )
        return ":".join(cursor.fetchone())


def _figures_key(plan: Plan, ids: list[int] | None, stamp: str) -> str:
    scope = "all" if ids is None else hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:16]
    return f"tessera:figures:{plan.pk}:{plan.version}:{scope}:{stamp}"


def plan_figures(*, user, plans: list[Plan]) -> dict[int, PlanFigures]:
    """Per-territory metrics, targets and deviations for each plan, over what `user` may see.

    Computed set-based for all plans at once (territories, account sums per territory, rep capacity
    per territory, and the account totals behind the unassigned bucket), and cached per plan
    version, scope and data fingerprint: the plan list with 12 plans of 20k accounts drops from
    ~0.5 s to a few queries."""
    if not plans:
        return {}
    visible = {plan.pk: visible_territory_ids(user=user, plan=plan) for plan in plans}
    stamp = _data_stamp()
    keys = {plan.pk: _figures_key(plan, visible[plan.pk], stamp) for plan in plans}
    cached = cache.get_many(list(keys.values()))
    result: dict[int, PlanFigures] = {}
    todo = []
    for plan in plans:
        hit = cached.get(keys[plan.pk])
        if hit is None:
            todo.append(plan)
        else:
            territories, totals, unassigned = hit
            result[plan.pk] = PlanFigures(
                plan=plan, territories=territories, totals=totals, unassigned=unassigned
            )
    if todo:
        fresh = _compute_figures(user=user, plans=todo, visible=visible)
        cache.set_many(
            {keys[pk]: (f.territories, f.totals, f.unassigned) for pk, f in fresh.items()},
            FIGURES_CACHE_SECONDS,
        )
        result.update(fresh)
    return result


def _compute_figures(
    *, user, plans: list[Plan], visible: dict[int, list[int] | None]
) -> dict[int, PlanFigures]:
    territory_scope = Q()
    assignment_scope = Q()
    for plan_id, ids in ((plan.pk, visible[plan.pk]) for plan in plans):
        territory_scope |= Q(plan_id=plan_id) if ids is None else Q(plan_id=plan_id, pk__in=ids)
        assignment_scope |= Q(plan_id=plan_id) if ids is None else Q(plan_id=plan_id, territory_id__in=ids)
    rows = (
        Territory.objects.filter(territory_scope)
        .annotate(has_children=Exists(Territory.objects.filter(parent=OuterRef("pk"))))
        .values("id", "plan_id", "parent_id", "code", "name", "level_name", "color", "has_children")
    )
    by_id: dict[int, TerritoryFigures] = {}
    plan_of: dict[int, int] = {}
    for row in rows:
        by_id[row["id"]] = TerritoryFigures(
            id=row["id"],
            code=row["code"],
            name=row["name"],
            level_name=row["level_name"],
            color=row["color"],
            parent_id=row["parent_id"],
            is_leaf=not row["has_children"],
        )
        plan_of[row["id"]] = row["plan_id"]
    money = DecimalField(max_digits=20, decimal_places=2)
    sums = (
        AccountAssignment.objects.filter(assignment_scope, role=AssignmentRole.PRIMARY)
        .values("territory_id")
        .annotate(
            accounts=Count("id"),
            revenue=Coalesce(Sum("account__revenue"), 0, output_field=money),
            potential=Coalesce(Sum("account__potential"), 0, output_field=money),
            workload=Coalesce(Sum("account__workload_hours"), 0, output_field=money),
        )
    )
    for row in sums:
        figures = by_id.get(row["territory_id"])
        if figures is not None:
            figures.metrics = {metric: float(row[metric]) for metric in METRICS}
    capacities = (
        TerritoryMembership.objects.filter(territory_id__in=list(by_id), role=MemberRole.PRIMARY)
        .values("territory_id")
        .annotate(capacity=Sum(F("rep__capacity_fte") * F("share"), output_field=money))
    )
    for row in capacities:
        by_id[row["territory_id"]].capacity = float(row["capacity"] or 0)

    everything = _zero()
    if user.sees_everything:
        agg = Account.objects.aggregate(
            accounts=Count("id"),
            revenue=Coalesce(Sum("revenue"), 0, output_field=money),
            potential=Coalesce(Sum("potential"), 0, output_field=money),
            workload=Coalesce(Sum("workload_hours"), 0, output_field=money),
        )
        everything = {metric: float(agg[metric]) for metric in METRICS}

    result: dict[int, PlanFigures] = {}
    for plan in plans:
        territories = [t for t in by_id.values() if plan_of[t.id] == plan.pk]
        leaves = [t for t in territories if t.is_leaf]
        # A target is a share of what the user sees: with one visible leaf (a rep's own territory)
        # there is nothing to compare it with, so no target rather than a meaningless 0%.
        if visible[plan.pk] is None or len(leaves) > 1:
            _targets(leaves)
        for leaf in leaves:
            leaf.tolerance = plan_tolerance(plan)
        # Roll leaf sums up to visible ancestors: deepest first so each parent sees full children.
        ordered = _order_tree(territories)
        for node in sorted(ordered, key=lambda t: -t.depth):
            parent = by_id.get(node.parent_id) if node.parent_id is not None else None
            if parent is not None and plan_of.get(parent.id) == plan.pk and not parent.is_leaf:
                for metric in METRICS:
                    parent.metrics[metric] += node.metrics[metric]
        totals = _zero()
        for leaf in leaves:
            for metric in METRICS:
                totals[metric] += leaf.metrics[metric]
        unassigned = (
            {metric: max(everything[metric] - totals[metric], 0.0) for metric in METRICS}
            if user.sees_everything
            else None
        )
        result[plan.pk] = PlanFigures(plan=plan, territories=ordered, totals=totals, unassigned=unassigned)
    return result


# --- comparing two plans -----------------------------------------------------------------------


def _scope_sql(alias: str, ids: list[int] | None) -> tuple[str, list]:
    if ids is None:
        return "", []
    return f" AND {alias}.territory_id = ANY(%s)", [ids]


def plan_diff(*, user, plan: Plan, other: Plan, limit: int = 500) -> dict:
    """How `plan` differs from `other`, over the accounts the user may see in either of them.

    An account moved when its primary territory's code differs between the two plans (territories
    are matched by code, since a cloned scenario has new ids), including gaining or losing an owner.
    Disruption is the moved share of accounts and of revenue. Per-territory metrics are matched by
    code; `delta` is plan − other. Shape as in contracts.md (GET plans/{id}/diff/), plus the moved
    accounts' coordinates for the map."""
    visible_plan = visible_territory_ids(user=user, plan=plan)
    visible_other = visible_territory_ids(user=user, plan=other)
    scope_a, params_a = _scope_sql("aa", visible_plan)
    scope_b, params_b = _scope_sql("aa", visible_other)
    aa = AccountAssignment._meta.db_table
    tt = Territory._meta.db_table
    acc = Account._meta.db_table
    ctes = f"""
        WITH a AS (
            SELECT aa.account_id, t.id AS tid, t.code, t.name FROM {aa} aa
            JOIN {tt} t ON t.id = aa.territory_id
            WHERE aa.plan_id = %s AND aa.role = %s{scope_a}
        ), b AS (
            SELECT aa.account_id, t.id AS tid, t.code, t.name FROM {aa} aa
            JOIN {tt} t ON t.id = aa.territory_id
            WHERE aa.plan_id = %s AND aa.role = %s{scope_b}
        ), joined AS (
            SELECT COALESCE(a.account_id, b.account_id) AS account_id,
                   a.tid AS a_id, a.code AS a_code, a.name AS a_name,
                   b.tid AS b_id, b.code AS b_code, b.name AS b_name,
                   a.code IS DISTINCT FROM b.code AS moved
            FROM a FULL OUTER JOIN b ON a.account_id = b.account_id
        )"""
    params = [plan.pk, AssignmentRole.PRIMARY, *params_a, other.pk, AssignmentRole.PRIMARY, *params_b]
    with connection.cursor() as cursor:
        cursor.execute(
            ctes
            + f"""
            SELECT count(*), count(*) FILTER (WHERE j.moved),
                   COALESCE(sum(x.revenue), 0), COALESCE(sum(x.revenue) FILTER (WHERE j.moved), 0)
            FROM joined j JOIN {acc} x ON x.id = j.account_id""",
            params,
        )
        accounts_total, moved_total, revenue_total, revenue_moved = cursor.fetchone()
        cursor.execute(
            ctes
            + f"""
            SELECT x.id, x.external_id, x.name, x.revenue, j.a_id, j.a_code, j.a_name,
                   j.b_id, j.b_code, j.b_name, ST_X(x.location), ST_Y(x.location)
            FROM joined j JOIN {acc} x ON x.id = j.account_id
            WHERE j.moved
            ORDER BY x.revenue DESC, x.id
            LIMIT %s""",
            [*params, max(int(limit), 0)],
        )
        moved_rows = cursor.fetchall()

    def side(tid, code, name):
        return None if tid is None else {"id": tid, "code": code, "name": name}

    moved_accounts = [
        {
            "account_id": row[0],
            "external_id": row[1],
            "name": row[2],
            "revenue": float(row[3]),
            # `from` is where the account sits in `other`, `to` where it sits in `plan`.
            "from": side(row[7], row[8], row[9]),
            "to": side(row[4], row[5], row[6]),
            "lon": row[10],
            "lat": row[11],
        }
        for row in moved_rows
    ]
    figures = plan_figures(user=user, plans=[plan, other])
    mine = {t.code: t for t in figures[plan.pk].territories}
    theirs = {t.code: t for t in figures[other.pk].territories}
    territories = []
    for code in sorted(set(mine) | set(theirs)):
        a, b = mine.get(code), theirs.get(code)
        metrics = {}
        for metric in METRICS:
            va = a.metrics[metric] if a else 0.0
            vb = b.metrics[metric] if b else 0.0
            metrics[metric] = {"plan": va, "other": vb, "delta": va - vb}
        territories.append(
            {
                "code": code,
                "name": (a or b).name,
                "level_name": (a or b).level_name,
                "is_leaf": (a or b).is_leaf,
                "plan_territory_id": a.id if a else None,
                "other_territory_id": b.id if b else None,
                "metrics": metrics,
            }
        )
    revenue_total = float(revenue_total)
    return {
        "plan": plan.pk,
        "other": other.pk,
        "accounts_total": accounts_total,
        "moved_total": moved_total,
        "moved_share": moved_total / accounts_total if accounts_total else 0.0,
        "disruption": {
            "accounts": moved_total / accounts_total if accounts_total else 0.0,
            "revenue": float(revenue_moved) / revenue_total if revenue_total else 0.0,
        },
        "moved_accounts": moved_accounts,
        "territories": territories,
    }


# --- map layers ----------------------------------------------------------------------------------


def _shapes_fingerprint(plan: Plan) -> str:
    """Changes when a unit changes territory or the hierarchy changes; account moves (the most
    frequent edit) leave it alone, so the unions are reused across them."""
    ua = UnitAssignment._meta.db_table
    tt = Territory._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT (SELECT concat_ws(':', count(*), sum(unit_id * territory_id), max(updated))
                        FROM {ua} WHERE plan_id = %s),
                       (SELECT concat_ws(':', count(*), sum(id * COALESCE(parent_id, 0)), max(updated))
                        FROM {tt} WHERE plan_id = %s)""",
            [plan.pk, plan.pk],
        )
        raw = "|".join(str(part) for part in cursor.fetchone())
    return hashlib.sha1(raw.encode()).hexdigest()


def _unit_shapes(plan: Plan) -> dict[int, str]:
    """GeoJSON text of each territory's units dissolved into one outline, cached per plan and
    fingerprint. The full boundaries are unioned and then simplified: the units' display outlines
    are simplified one by one, so their shared edges no longer meet and a union of them is full of
    slivers. About 1.6 s for 40 territories over 3,100 counties, hence the cache."""
    key = f"tessera:pages:unit-shapes:{plan.pk}:{_shapes_fingerprint(plan)}"
    shapes = cache.get(key)
    if shapes is None:
        ua = UnitAssignment._meta.db_table
        gu = GeoUnit._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""SELECT x.territory_id,
                           ST_AsGeoJSON(ST_SimplifyPreserveTopology(ST_Union(u.geom), %s), %s)
                    FROM {ua} x JOIN {gu} u ON u.id = x.unit_id
                    WHERE x.plan_id = %s
                    GROUP BY x.territory_id""",
                [OUTLINE_SIMPLIFY_DEGREES, GEOJSON_PRECISION, plan.pk],
            )
            shapes = {territory_id: shape for territory_id, shape in cursor.fetchall() if shape}
        cache.set(key, shapes, OUTLINE_CACHE_SECONDS)
    return shapes


def _account_hulls(plan: Plan, territory_ids: list[int]) -> dict[int, str]:
    """The convex hull of each territory's located accounts, for territories without units."""
    if not territory_ids:
        return {}
    aa = AccountAssignment._meta.db_table
    acc = Account._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT y.territory_id, ST_AsGeoJSON(ST_ConvexHull(ST_Collect(a.location)), %s)
                FROM {aa} y JOIN {acc} a ON a.id = y.account_id
                WHERE y.plan_id = %s AND y.role = %s AND a.location IS NOT NULL
                  AND y.territory_id = ANY(%s)
                GROUP BY y.territory_id""",
            [GEOJSON_PRECISION, plan.pk, AssignmentRole.PRIMARY, list(territory_ids)],
        )
        return {territory_id: shape for territory_id, shape in cursor.fetchall() if shape}


def _outline_features(plan: Plan, territories: list[dict]) -> list[str]:
    """GeoJSON Feature texts for territory rows (id, code, name, color, parent_id): their units'
    outline, else the hull of their accounts; territories with neither are left out."""
    shapes = _unit_shapes(plan) if territories else {}
    shapes = shapes | _account_hulls(plan, [t["id"] for t in territories if t["id"] not in shapes])
    return [
        '{"type":"Feature","id":'
        + str(t["id"])
        + ',"properties":'
        + json.dumps(t)
        + ',"geometry":'
        + shapes[t["id"]]
        + "}"
        for t in territories
        if t["id"] in shapes
    ]


def plan_outlines_geojson(*, user, plan: Plan) -> bytes:
    """The plan's leaf territories the user may see as a GeoJSON FeatureCollection: each one's
    units dissolved into an outline, or the convex hull of its accounts when it has no units (a
    rule- or hand-built territory); territories with neither are left out."""
    ids = visible_territory_ids(user=user, plan=plan)
    leaves = Territory.objects.filter(plan=plan, children__isnull=True)
    if ids is not None:
        leaves = leaves.filter(pk__in=ids)
    rows = list(leaves.order_by("code").values("id", "code", "name", "color", "parent_id"))
    return (
        '{"type":"FeatureCollection","features":[' + ",".join(_outline_features(plan, rows)) + "]}"
    ).encode()


def territory_outlines(*, plan: Plan, territory_ids: list[int]) -> dict:
    """Outlines of a few of a plan's territories (a rep's, an account owner's) as a GeoJSON dict.
    The caller has checked the user may see them."""
    if not territory_ids:
        return {"type": "FeatureCollection", "features": []}
    rows = list(
        Territory.objects.filter(plan=plan, pk__in=list(territory_ids))
        .order_by("code")
        .values("id", "code", "name", "color", "parent_id")
    )
    return {"type": "FeatureCollection", "features": [json.loads(f) for f in _outline_features(plan, rows)]}


def state_outlines_geojson() -> bytes:
    """State outlines (display geometry), the pages' offline base layer. Cached under the state
    rows' count, last id and last update, so reloading the geography refreshes it."""
    stamp = GeoUnit.objects.filter(level=UnitLevel.STATE).aggregate(
        count=Count("id"), last_id=Max("id"), last_updated=Max("updated")
    )
    updated = stamp["last_updated"].timestamp() if stamp["last_updated"] else 0
    version = f"{stamp['count']}-{stamp['last_id'] or 0}-{updated}"
    cache_key = f"tessera:pages:states:{version}"
    body = cache.get(cache_key)
    if body is not None:
        return body
    rows = (
        GeoUnit.objects.filter(level=UnitLevel.STATE)
        .order_by("code")
        .annotate(shape=AsGeoJSON("geom_simplified", precision=3))
        .values_list("code", "name", "shape")
    )
    features = ",".join(
        '{"type":"Feature","properties":'
        + json.dumps({"code": code, "name": name})
        + ',"geometry":'
        + shape
        + "}"
        for code, name, shape in rows
    )
    body = ('{"type":"FeatureCollection","features":[' + features + "]}").encode()
    cache.set(cache_key, body, OUTLINE_CACHE_SECONDS)
    return body

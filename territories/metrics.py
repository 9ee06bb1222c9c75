"""Balance figures of a plan per territory (accounts, revenue, potential, workload), with targets,
deviations, rep capacity, locks, units and contiguity, plus the territory layer as GeoJSON.

Everything is computed in a fixed number of queries (one per kind of fact, never one per territory),
over the territories the user may see (territories.selectors)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.core.cache import cache
from django.db import connection
from django.db.models import Case, Count, IntegerField, Q, Sum, Value, When

from accounts.models import Account

from .choices import AssignmentRole, MemberRole
from .models import AccountAssignment, GeoUnit, Plan, Territory, TerritoryMembership, UnitAssignment
from .selectors import visible_territory_ids

METRIC_NAMES = ("accounts", "revenue", "potential", "workload")
DEFAULT_TOLERANCE = 0.05

# Primary reps first: the CRM's owner field is the first rep of a territory.
ROLE_ORDER = Case(
    When(role=MemberRole.PRIMARY, then=Value(0)),
    When(role=MemberRole.OVERLAY, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def _number(value) -> float | int:
    if isinstance(value, Decimal):
        return float(value)
    return value or 0


def _rounded(values: dict, digits: int) -> dict:
    """Sums of decimals come back as floats with noise in the last digits; round for readers."""
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in values.items()}


def empty_metrics() -> dict[str, float | int]:
    return {name: 0 for name in METRIC_NAMES}


@dataclass
class Node:
    """One territory of a plan with what the API reports about it."""

    territory: Territory
    children: list[Node] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    path_codes: list[str] = field(default_factory=list)
    reps: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=empty_metrics)
    locked_accounts: int = 0
    units: int = 0

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass
class PlanTree:
    """A plan's whole hierarchy (roll-ups need every node) and the ids the user may see."""

    plan: Plan
    nodes: dict[int, Node]
    roots: list[Node]
    visible: set[int] | None

    def ordered(self) -> list[Node]:
        """Visible nodes depth-first, children by code: the order of the hierarchy on screen."""
        out: list[Node] = []
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            if self.visible is None or node.territory.pk in self.visible:
                out.append(node)
            stack.extend(reversed(node.children))
        return out

    def leaves(self) -> list[Node]:
        return [node for node in self.ordered() if node.is_leaf]

    def subtree(self, node: Node) -> list[Node]:
        out, stack = [], [node]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(current.children)
        return out


def territory_reps(territory_ids) -> dict[int, list[dict]]:
    """Reps per territory, primary first, in one query."""
    reps: dict[int, list[dict]] = defaultdict(list)
    memberships = (
        TerritoryMembership.objects.filter(territory_id__in=territory_ids)
        .select_related("rep")
        .order_by("territory_id", ROLE_ORDER, "-share", "rep__name", "rep_id")
    )
    for m in memberships:
        reps[m.territory_id].append(
            {
                "id": m.rep_id,
                "external_id": m.rep.external_id,
                "name": m.rep.name,
                "email": m.rep.email,
                "role": m.role,
                "share": float(m.share),
                "capacity_fte": float(m.rep.capacity_fte),
            }
        )
    return reps


def plan_tree(*, plan: Plan, user, with_metrics: bool = True) -> PlanTree:
    """The plan's hierarchy with paths, reps and (optionally) leaf metrics rolled up to parents."""
    territories = list(Territory.objects.filter(plan=plan).select_related("manager").order_by("code", "id"))
    nodes = {t.pk: Node(territory=t) for t in territories}
    roots = []
    for node in nodes.values():
        parent = nodes.get(node.territory.parent_id)
        (parent.children if parent else roots).append(node)
    # Paths root-first; a parent cycle (which the database cannot fully exclude) stops the walk.
    for node in nodes.values():
        chain, current, seen = [], node, set()
        while current is not None and current.territory.pk not in seen:
            seen.add(current.territory.pk)
            chain.append(current.territory)
            current = nodes.get(current.territory.parent_id)
        node.path = [t.name for t in reversed(chain)]
        node.path_codes = [t.code for t in reversed(chain)]
    ids = visible_territory_ids(user=user, plan=plan)
    tree = PlanTree(plan=plan, nodes=nodes, roots=roots, visible=None if ids is None else set(ids))
    reps = territory_reps(list(nodes))
    for territory_id, rows in reps.items():
        nodes[territory_id].reps = rows
    if with_metrics:
        _fill_metrics(tree)
    return tree


def _fill_metrics(tree: PlanTree) -> None:
    plan = tree.plan
    rows = (
        AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY)
        .values("territory_id")
        .annotate(
            accounts=Count("id"),
            revenue=Sum("account__revenue"),
            potential=Sum("account__potential"),
            workload=Sum("account__workload_hours"),
            locked=Count("id", filter=Q(locked=True)),
        )
    )
    for row in rows:
        node = tree.nodes.get(row["territory_id"])
        if node is None:
            continue
        node.metrics = {name: _number(row[name]) for name in METRIC_NAMES}
        node.locked_accounts = row["locked"]
    for row in UnitAssignment.objects.filter(plan=plan).values("territory_id").annotate(n=Count("id")):
        if row["territory_id"] in tree.nodes:
            tree.nodes[row["territory_id"]].units = row["n"]

    # Roll leaf figures up to every ancestor, children before parents.
    def roll(node: Node, depth: int = 0) -> None:
        if depth > 100:
            return
        for child in node.children:
            roll(child, depth + 1)
            for name in METRIC_NAMES:
                node.metrics[name] += child.metrics[name]
            node.locked_accounts += child.locked_accounts
            node.units += child.units

    for root in tree.roots:
        roll(root)


def _unit_components(plan: Plan) -> tuple[dict[int, list[int]], dict[int, set[int]]]:
    """Units of each leaf territory and the adjacency among the plan's assigned units."""
    units_by_territory: dict[int, list[int]] = defaultdict(list)
    for unit_id, territory_id in UnitAssignment.objects.filter(plan=plan).values_list(
        "unit_id", "territory_id"
    ):
        units_by_territory[territory_id].append(unit_id)
    through = GeoUnit.adjacent.through._meta.db_table
    ua = UnitAssignment._meta.db_table
    neighbours: dict[int, set[int]] = defaultdict(set)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT t.from_geounit_id, t.to_geounit_id FROM {through} t
                JOIN {ua} a ON a.unit_id = t.from_geounit_id AND a.plan_id = %s
                JOIN {ua} b ON b.unit_id = t.to_geounit_id AND b.plan_id = %s""",
            [plan.pk, plan.pk],
        )
        for a, b in cursor.fetchall():
            neighbours[a].add(b)
            neighbours[b].add(a)
    return units_by_territory, neighbours


def _connected(units: list[int], neighbours: dict[int, set[int]]) -> bool:
    wanted = set(units)
    start = units[0]
    seen, stack = {start}, [start]
    while stack:
        for other in neighbours.get(stack.pop(), ()):
            if other in wanted and other not in seen:
                seen.add(other)
                stack.append(other)
    return len(seen) == len(wanted)


def plan_tolerance(plan: Plan) -> float:
    """The balance tolerance the plan was last balanced with (a single number), else ±5%."""
    stored = (plan.metrics or {}).get("balance", {}) if isinstance(plan.metrics, dict) else {}
    value = stored.get("tolerance") if isinstance(stored, dict) else None
    if isinstance(value, int | float) and 0 < value < 1:
        return float(value)
    return DEFAULT_TOLERANCE


def plan_metrics(*, plan: Plan, user) -> dict:
    """The plan's balance figures per visible territory (shape: contracts.md, plans/{id}/metrics/)."""
    tree = plan_tree(plan=plan, user=user)
    visible = tree.ordered()
    leaves = [node for node in visible if node.is_leaf]
    totals = empty_metrics()
    for leaf in leaves:
        for name in METRIC_NAMES:
            totals[name] += leaf.metrics[name]
    unassigned = None
    if tree.visible is None:
        # Unassigned accounts belong to no one's scope: only those who see everything get them.
        assigned = AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY).values(
            "account_id"
        )
        row = Account.objects.exclude(pk__in=assigned).aggregate(
            accounts=Count("id"),
            revenue=Sum("revenue"),
            potential=Sum("potential"),
            workload=Sum("workload_hours"),
        )
        unassigned = {name: _number(row[name]) for name in METRIC_NAMES}

    # A leaf's fair share is its primary reps' capacity over all visible leaves' capacity.
    capacity = {
        leaf.territory.pk: sum(
            r["capacity_fte"] * r["share"] for r in leaf.reps if r["role"] == MemberRole.PRIMARY
        )
        for leaf in leaves
    }
    all_capacity = sum(capacity.values())
    share = {pk: (cap / all_capacity if all_capacity else 1 / len(leaves)) for pk, cap in capacity.items()}
    tolerance = plan_tolerance(plan)
    units_by_territory, neighbours = _unit_components(plan)

    out = []
    for node in visible:
        subtree_leaves = [n for n in tree.subtree(node) if n.is_leaf and n.territory.pk in share]
        target = None
        deviation = None
        if subtree_leaves:
            weight = sum(share[n.territory.pk] for n in subtree_leaves)
            target = {name: round(totals[name] * weight, 2) for name in METRIC_NAMES}
            deviation = {
                name: round((node.metrics[name] - target[name]) / target[name], 4) if target[name] else None
                for name in METRIC_NAMES
            }
        units = [u for n in tree.subtree(node) for u in units_by_territory.get(n.territory.pk, [])]
        territory = node.territory
        out.append(
            {
                "id": territory.pk,
                "code": territory.code,
                "name": territory.name,
                "level_name": territory.level_name,
                "parent_id": territory.parent_id,
                "path": node.path,
                "path_codes": node.path_codes,
                "is_leaf": node.is_leaf,
                "color": territory.color,
                "manager": (
                    {"id": territory.manager_id, "username": territory.manager.username}
                    if territory.manager_id
                    else None
                ),
                "reps": node.reps,
                "metrics": _rounded(node.metrics, 2),
                "target": target,
                "deviation": deviation,
                "outside_tolerance": bool(
                    deviation and any(d is not None and abs(d) > tolerance for d in deviation.values())
                ),
                "locked_accounts": node.locked_accounts,
                "units": node.units,
                "contiguous": _connected(units, neighbours) if units else None,
            }
        )
    return {
        "plan": {"id": plan.pk, "name": plan.name, "status": plan.status, "version": plan.version},
        "metric_names": list(METRIC_NAMES),
        "tolerance": tolerance,
        "totals": _rounded(totals, 2),
        "unassigned": unassigned and _rounded(unassigned, 2),
        "territories": out,
    }


_TREE_SQL = """
WITH RECURSIVE tree(ancestor_id, territory_id, depth) AS (
    SELECT id, id, 0 FROM {territory} WHERE plan_id = %(plan)s
    UNION ALL
    SELECT tree.ancestor_id, t.id, tree.depth + 1 FROM {territory} t
    JOIN tree ON t.parent_id = tree.territory_id
    WHERE tree.depth < 100
)"""

# Every territory's outline: its units' union for a leaf, its leaves' outlines' union for a parent.
_SHAPES_SQL = (
    _TREE_SQL
    + """,
leaf_shapes AS (
    SELECT ua.territory_id, ST_Union(u.geom_simplified) AS geom
    FROM {unit_assignment} ua JOIN {unit} u ON u.id = ua.unit_id
    WHERE ua.plan_id = %(plan)s
    GROUP BY ua.territory_id
)
SELECT tree.ancestor_id, ST_AsGeoJSON(ST_Union(s.geom), 5)
FROM tree JOIN leaf_shapes s ON s.territory_id = tree.territory_id
GROUP BY tree.ancestor_id
"""
)

# Territories without units: the convex hull of their (subtree's) accounts.
_HULLS_SQL = (
    _TREE_SQL
    + """
SELECT tree.ancestor_id, ST_AsGeoJSON(ST_ConvexHull(ST_Collect(a.location)), 5)
FROM tree
JOIN {assignment} aa ON aa.territory_id = tree.territory_id
 AND aa.plan_id = %(plan)s AND aa.role = %(primary)s
JOIN {account} a ON a.id = aa.account_id AND a.location IS NOT NULL
WHERE tree.ancestor_id = ANY(%(ids)s)
GROUP BY tree.ancestor_id
"""
)

_TABLES = {
    "territory": Territory._meta.db_table,
    "unit_assignment": UnitAssignment._meta.db_table,
    "unit": GeoUnit._meta.db_table,
    "assignment": AccountAssignment._meta.db_table,
    "account": Account._meta.db_table,
}

SHAPES_CACHE_SECONDS = 3600


def _shapes_fingerprint(plan: Plan) -> str:
    """Changes whenever a unit changes territory or the hierarchy changes shape; account moves,
    the most frequent edit, leave it alone, so the costly unions are reused across them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT (SELECT concat_ws(':', count(*), sum(unit_id * territory_id), max(updated))
                        FROM {_TABLES["unit_assignment"]} WHERE plan_id = %(plan)s),
                       (SELECT concat_ws(':', count(*), sum(id * COALESCE(parent_id, 0)), max(updated))
                        FROM {_TABLES["territory"]} WHERE plan_id = %(plan)s)""",
            {"plan": plan.pk},
        )
        raw = "|".join(str(part) for part in cursor.fetchone())
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()


def plan_shapes(plan: Plan) -> dict[int, str]:
    """GeoJSON text of every territory's unit outline (territories without units are absent);
    the unions are cached per plan and fingerprint."""
    key = f"tessera:plan-shapes:{plan.pk}:{_shapes_fingerprint(plan)}"
    shapes = cache.get(key)
    if shapes is None:
        with connection.cursor() as cursor:
            cursor.execute(_SHAPES_SQL.format(**_TABLES), {"plan": plan.pk})
            shapes = {territory_id: geojson for territory_id, geojson in cursor.fetchall() if geojson}
        cache.set(key, shapes, SHAPES_CACHE_SECONDS)
    return shapes


def territory_features(*, plan: Plan, user, leaves_only: bool = False) -> dict:
    """The plan's visible territories as a GeoJSON FeatureCollection. A territory's geometry is the
    union of its units' simplified outlines (for a parent, of its whole subtree's), else the convex
    hull of its accounts, else null."""
    tree = plan_tree(plan=plan, user=user)
    nodes = [n for n in tree.ordered() if n.is_leaf or not leaves_only]
    shapes = plan_shapes(plan) if nodes else {}
    geometries: dict[int, dict] = {
        n.territory.pk: json.loads(shapes[n.territory.pk]) for n in nodes if n.territory.pk in shapes
    }
    without = [n.territory.pk for n in nodes if n.territory.pk not in shapes]
    if without:
        with connection.cursor() as cursor:
            cursor.execute(
                _HULLS_SQL.format(**_TABLES),
                {"plan": plan.pk, "ids": without, "primary": AssignmentRole.PRIMARY},
            )
            for territory_id, geojson in cursor.fetchall():
                if geojson:
                    geometries[territory_id] = json.loads(geojson)
    features = []
    for node in nodes:
        t = node.territory
        features.append(
            {
                "type": "Feature",
                "id": t.pk,
                "geometry": geometries.get(t.pk),
                "properties": {
                    "id": t.pk,
                    "code": t.code,
                    "name": t.name,
                    "level_name": t.level_name,
                    "parent_id": t.parent_id,
                    "path": node.path,
                    "path_codes": node.path_codes,
                    "color": t.color,
                    "is_leaf": node.is_leaf,
                    "reps": node.reps,
                    "metrics": _rounded(node.metrics, 2),
                    "locked_accounts": node.locked_accounts,
                    "units": node.units,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}

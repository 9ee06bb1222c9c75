"""Reads of plans, territories and assignments, already scoped to what the user may see.

Scope: admins, planners and integrations see everything; a manager sees the subtrees of the
territories they manage in a plan; a rep sees the territories they are a member of; anyone else
sees nothing. Views and viewsets never filter for permissions themselves."""

from __future__ import annotations

import datetime as dt
import json

from django.contrib.gis.db.models.functions import AsGeoJSON
from django.contrib.gis.geos import Polygon
from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Account, Rep

from .choices import AssignmentRole, PlanStatus
from .models import AccountAssignment, GeoUnit, Plan, Territory, UnitAssignment


def _subtree_ids(root_ids: list[int]) -> list[int]:
    if not root_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH RECURSIVE subtree(id) AS (
                    SELECT id FROM {Territory._meta.db_table} WHERE id = ANY(%s)
                    UNION
                    SELECT t.id FROM {Territory._meta.db_table} t JOIN subtree s ON t.parent_id = s.id
                ) SELECT id FROM subtree""",
            [root_ids],
        )
        return [row[0] for row in cursor.fetchall()]


def territory_subtree_ids(*, territory: Territory) -> list[int]:
    """The territory and every descendant, at any depth."""
    return _subtree_ids([territory.pk])


def visible_territory_ids(*, user, plan: Plan) -> list[int] | None:
    """Ids of the plan's territories the user may see; None means all of them."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.sees_everything:
        return None
    roots = list(Territory.objects.filter(plan=plan, manager=user).values_list("pk", flat=True))
    member_of = list(
        Territory.objects.filter(plan=plan, memberships__rep__user=user).values_list("pk", flat=True)
    )
    return sorted(set(_subtree_ids(roots)) | set(member_of))


def plan_active_on(*, date: dt.date | None = None) -> Plan | None:
    """The plan in effect on `date` (today by default)."""
    date = date or timezone.localdate()
    # Written out rather than built with the ORM: lead routing asks this on every request, and
    # compiling the equivalent queryset costs several times the query itself.
    plans = Plan.objects.raw(
        f"""SELECT * FROM {Plan._meta.db_table}
            WHERE status IN (%s, %s) AND published_at IS NOT NULL AND effective_from <= %s
              AND (effective_to IS NULL OR effective_to > %s)
            ORDER BY effective_from DESC, id DESC LIMIT 1""",
        [PlanStatus.ACTIVE, PlanStatus.ARCHIVED, date, date],
    )
    return next(iter(plans), None)


def plan_list(*, user) -> QuerySet[Plan]:
    """Plans the user may see. Managers and reps see non-draft plans in which they have a place."""
    plans = Plan.objects.select_related("owner", "based_on")
    if not user.is_authenticated or not user.is_active:
        return plans.none()
    if user.sees_everything:
        return plans
    in_scope = Territory.objects.filter(Q(manager=user) | Q(memberships__rep__user=user)).values("plan_id")
    return plans.filter(pk__in=in_scope).exclude(status=PlanStatus.DRAFT)


def territory_list(*, user, plan: Plan) -> QuerySet[Territory]:
    territories = Territory.objects.filter(plan=plan).select_related("parent", "manager")
    ids = visible_territory_ids(user=user, plan=plan)
    return territories if ids is None else territories.filter(pk__in=ids)


def account_list(*, user, plan: Plan | None = None) -> QuerySet[Account]:
    """Accounts the user may see: all for planners; otherwise those owned (primary or overlay) by a
    visible territory of `plan` (the plan in effect today when not given)."""
    accounts = Account.objects.all()
    if not user.is_authenticated or not user.is_active:
        return accounts.none()
    if user.sees_everything:
        return accounts
    plan = plan or plan_active_on()
    if plan is None:
        return accounts.none()
    ids = visible_territory_ids(user=user, plan=plan)
    owned = AccountAssignment.objects.filter(plan=plan, territory_id__in=ids).values("account_id")
    return accounts.filter(pk__in=owned)


def rep_list(*, user, plan: Plan | None = None) -> QuerySet[Rep]:
    """Reps the user may see: all for planners; a manager the reps of their subtree and their own
    reporting line; a rep themselves."""
    reps = Rep.objects.select_related("manager", "user")
    if not user.is_authenticated or not user.is_active:
        return reps.none()
    if user.sees_everything:
        return reps
    plan = plan or plan_active_on()
    visible = Q(user=user)
    if plan is not None:
        ids = visible_territory_ids(user=user, plan=plan)
        visible |= Q(memberships__territory_id__in=ids)
    own_rep = Rep.objects.filter(user=user).first()
    if own_rep is not None:
        visible |= Q(manager=own_rep) | Q(manager__manager=own_rep) | Q(manager__manager__manager=own_rep)
    return reps.filter(visible).distinct()


def plan_summaries(*, user) -> list[dict]:
    """Headline figures per visible plan for the home page, over the territories the user may see:
    leaf territories, assigned accounts, unassigned accounts (planners only: unassigned accounts
    belong to no one's scope) and the spread of potential across leaf territories."""
    plans = list(plan_list(user=user)[:50])
    visible = {plan.pk: visible_territory_ids(user=user, plan=plan) for plan in plans}
    scope = Q()
    for plan_id, ids in visible.items():
        scope |= Q(plan_id=plan_id) if ids is None else Q(plan_id=plan_id, territory_id__in=ids)
    potential_by_territory: dict[int, list[float]] = {plan.pk: [] for plan in plans}
    assigned_by_plan: dict[int, int] = dict.fromkeys(potential_by_territory, 0)
    leaves_by_plan: dict[int, int] = dict.fromkeys(potential_by_territory, 0)
    if plans:
        rows = (
            AccountAssignment.objects.filter(scope, role=AssignmentRole.PRIMARY)
            .values("plan_id", "territory_id")
            .annotate(accounts=Count("id"), potential=Sum("account__potential"))
        )
        for row in rows:
            potential_by_territory[row["plan_id"]].append(float(row["potential"] or 0))
            assigned_by_plan[row["plan_id"]] += row["accounts"]
        leaf_scope = Q()
        for plan_id, ids in visible.items():
            leaf_scope |= Q(plan_id=plan_id) if ids is None else Q(plan_id=plan_id, pk__in=ids)
        leaves = Territory.objects.filter(leaf_scope, children__isnull=True).values("plan_id")
        for row in leaves.annotate(n=Count("id")):
            leaves_by_plan[row["plan_id"]] = row["n"]
    total_accounts = Account.objects.count() if user.sees_everything else None
    summaries = []
    for plan in plans:
        potentials = potential_by_territory[plan.pk]
        mean = sum(potentials) / len(potentials) if potentials else 0
        summaries.append(
            {
                "plan": plan,
                "territories": leaves_by_plan[plan.pk],
                "assigned": assigned_by_plan[plan.pk],
                "unassigned": None if total_accounts is None else total_accounts - assigned_by_plan[plan.pk],
                "potential_spread": (max(potentials) - min(potentials)) / mean if mean else None,
            }
        )
    return summaries


def rule_list(*, user, plan: Plan) -> QuerySet:
    """A plan's assignment rules the user may see: all for planners; for others, the rules that send
    accounts to a territory in their scope."""
    from .models import AssignmentRule

    rules = AssignmentRule.objects.filter(plan=plan).select_related("territory").order_by("priority", "id")
    ids = visible_territory_ids(user=user, plan=plan)
    return rules if ids is None else rules.filter(territory_id__in=ids)


def assignment_list(*, user, plan: Plan) -> QuerySet[AccountAssignment]:
    """The plan's account assignments (primary and overlay) owned by territories the user may see."""
    assignments = (
        AccountAssignment.objects.filter(plan=plan)
        .select_related("account", "territory")
        .only(
            "id",
            "account_id",
            "account__external_id",
            "account__name",
            "territory_id",
            "territory__code",
            "role",
            "source",
            "locked",
            "rule_id",
            "unit_id",
        )
        .order_by("account_id", "role", "id")
    )
    ids = visible_territory_ids(user=user, plan=plan)
    return assignments if ids is None else assignments.filter(territory_id__in=ids)


GEOUNIT_DEFAULT_LIMIT = 2000
GEOUNIT_MAX_LIMIT = 5000


def geounit_features(
    *,
    user,
    level: str | None = None,
    bbox: list[float] | None = None,
    code: str | None = None,
    plan: Plan | None = None,
    limit: int = GEOUNIT_DEFAULT_LIMIT,
) -> dict:
    """Geography units as a GeoJSON FeatureCollection of their simplified outlines, ordered by level
    and code, at most `limit` (then `truncated` is true: narrow the bounding box). With `plan`, each
    unit's territory there, when the user may see that territory."""
    units = GeoUnit.objects.defer("geom", "geom_simplified").annotate(
        geojson=AsGeoJSON("geom_simplified", precision=5)
    )
    if level:
        units = units.filter(level=level)
    if code:
        units = units.filter(code=code)
    if bbox:
        units = units.filter(geom_simplified__bboverlaps=Polygon.from_bbox(tuple(bbox)))
    rows = list(units.order_by("level", "code")[: limit + 1])
    truncated = len(rows) > limit
    rows = rows[:limit]
    owners: dict[int, dict] = {}
    if plan is not None and rows:
        ids = visible_territory_ids(user=user, plan=plan)
        assignments = UnitAssignment.objects.filter(plan=plan, unit_id__in=[u.pk for u in rows])
        if ids is not None:
            assignments = assignments.filter(territory_id__in=ids)
        for unit_id, territory_id, territory_code, color, locked in assignments.values_list(
            "unit_id", "territory_id", "territory__code", "territory__color", "locked"
        ):
            owners[unit_id] = {"id": territory_id, "code": territory_code, "color": color, "locked": locked}
    features = []
    for unit in rows:
        properties = {
            "id": unit.pk,
            "level": unit.level,
            "code": unit.code,
            "name": unit.name,
            "parent_id": unit.parent_id,
            "area_sq_km": round(unit.area_sq_km, 1),
            "attributes": unit.attributes,
        }
        if plan is not None:
            properties["territory"] = owners.get(unit.pk)
        features.append(
            {
                "type": "Feature",
                "id": unit.pk,
                "geometry": json.loads(unit.geojson) if unit.geojson else None,
                "properties": properties,
            }
        )
    return {"type": "FeatureCollection", "features": features, "truncated": truncated}

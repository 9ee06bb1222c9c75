"""The map planner's own API: why an account is where it is, undo/redo and history, locks,
selections by box or lasso, and the unit → territory map the planner paints the base layer with.

Reads are scoped by the selectors; writes need a planner (or admin) and, for tokens, the 'write'
scope, and carry the plan version (stale → 409)."""

from __future__ import annotations

import json

from django.contrib.gis.geos import GEOSException, GEOSGeometry, MultiPolygon, Polygon
from django.db import connection
from django.db.models import Count, OuterRef, Subquery, Sum
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Account, ApiToken
from tessera_common.errors import ApplicationError

from ..choices import AssignmentRole, PlanStatus, UnitLevel
from ..history import account_assignments_lock, plan_history, plan_redo, plan_undo
from ..models import AccountAssignment, GeoUnit, Plan, Territory, UnitAssignment
from ..resolver import resolve_account
from ..selectors import account_list, plan_list, visible_territory_ids
from .planner_serializers import (
    HistorySerializer,
    LockSerializer,
    PlanMapSerializer,
    SelectionPolygonSerializer,
    SelectionSerializer,
    UndoRedoSerializer,
    VersionSerializer,
    WhySerializer,
)

# Selections answer with at most this many ids: a lasso over a whole state is still one request,
# and the totals always cover the full selection.
SELECTION_MAX_IDS = 50_000
SELECTABLE_UNIT_LEVELS = [UnitLevel.COUNTY.value, UnitLevel.ZIP.value, UnitLevel.CUSTOM.value]


def _plan(request, pk: int) -> Plan:
    return get_object_or_404(plan_list(user=request.user), pk=pk)


def _require_planner(request) -> None:
    if not getattr(request.user, "can_plan", False):
        raise PermissionDenied("Only planners and admins edit plans; this view is read-only for you.")
    token = request.auth if isinstance(request.auth, ApiToken) else None
    if token is not None and "write" not in token.scopes:
        raise PermissionDenied("This API token lacks the 'write' scope.")


def _version(request) -> int | None:
    serializer = VersionSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    version = serializer.validated_data.get("version")
    if version is None and request.headers.get("If-Match"):
        try:
            version = int(request.headers["If-Match"].strip('"'))
        except ValueError:
            raise ApplicationError(
                "If-Match must be the plan version (a number).", {"version": ["not a number"]}
            ) from None
    if version is None:
        raise ApplicationError(
            "Send the plan version you edited (body 'version' or If-Match), so a stale edit is refused.",
            {"version": ["This field is required."]},
        )
    return version


def _ref(territory: Territory | None) -> dict | None:
    if territory is None:
        return None
    return {"id": territory.pk, "code": territory.code, "name": territory.name}


def _path(territory: Territory | None) -> list[str]:
    names = []
    seen = set()
    while territory is not None and territory.pk not in seen:
        seen.add(territory.pk)
        names.append(territory.code)
        territory = territory.parent
    return list(reversed(names))


class AccountWhyView(APIView):
    """'Why is this account here?': the resolver's answer for this plan beside what is stored."""

    @extend_schema(responses=WhySerializer)
    def get(self, request, pk: int, account_id: int):
        plan = _plan(request, pk)
        account = get_object_or_404(account_list(user=request.user, plan=plan), pk=account_id)
        resolution = resolve_account(plan=plan, account=account)
        stored = (
            AccountAssignment.objects.filter(plan=plan, account=account, role=AssignmentRole.PRIMARY)
            .select_related("territory")
            .first()
        )
        stored_territory = stored.territory if stored else None
        agrees = (stored_territory.pk if stored_territory else None) == (
            resolution.territory.pk if resolution.territory else None
        )
        if agrees:
            note = ""
        elif stored is not None and stored.source == "manual":
            note = (
                "A manual move that is not locked: rebuilding the plan from its rules and geography "
                "would move it back. Lock it to keep it here."
            )
        elif stored is not None and stored.source == "optimizer":
            note = "Placed by the optimizer; rebuilding the plan would follow the resolver instead."
        else:
            note = "The stored owner differs from the resolver's answer; rebuilding the plan would apply it."
        parent = resolution.parent_account
        data = {
            "account": {"id": account.pk, "external_id": account.external_id, "name": account.name},
            "plan": {"id": plan.pk, "name": plan.name, "version": plan.version},
            "step": resolution.step,
            "explanation": resolution.explanation,
            "territory": _ref(resolution.territory),
            "path": _path(resolution.territory),
            "rule": (
                {"id": resolution.rule.pk, "name": resolution.rule.name, "priority": resolution.rule.priority}
                if resolution.rule
                else None
            ),
            "unit": (
                {
                    "id": resolution.unit.pk,
                    "code": resolution.unit.code,
                    "name": resolution.unit.name,
                    "level": resolution.unit.level,
                }
                if resolution.unit
                else None
            ),
            "locked": bool(stored and stored.locked),
            "parent": (
                {"id": parent.pk, "external_id": parent.external_id, "name": parent.name} if parent else None
            ),
            "stored": {
                "territory": _ref(stored_territory),
                "source": stored.source if stored else None,
                "locked": bool(stored and stored.locked),
            },
            "agrees": agrees,
            "note": note,
        }
        return Response(data)


class PlanHistoryView(APIView):
    """The requesting user's undo and redo stacks in this plan (newest first)."""

    @extend_schema(responses=HistorySerializer)
    def get(self, request, pk: int):
        plan = _plan(request, pk)
        return Response(
            {
                "plan": plan.pk,
                "version": plan.version,
                **plan_history(plan=plan, actor=request.user).as_dict(),
            }
        )


class PlanUndoView(APIView):
    """Undo the user's last edit of accounts or units in this plan (a new batch of Changes)."""

    @extend_schema(request=VersionSerializer, responses=UndoRedoSerializer)
    def post(self, request, pk: int):
        _require_planner(request)
        plan = _plan(request, pk)
        result = plan_undo(plan=plan, actor=request.user, expected_version=_version(request))
        return Response(result)


class PlanRedoView(APIView):
    """Redo the edit the user last undid in this plan."""

    @extend_schema(request=VersionSerializer, responses=UndoRedoSerializer)
    def post(self, request, pk: int):
        _require_planner(request)
        plan = _plan(request, pk)
        result = plan_redo(plan=plan, actor=request.user, expected_version=_version(request))
        return Response(result)


class PlanLocksView(APIView):
    """Lock or unlock accounts where they are: {"account_ids": [...], "locked": bool, "version": n}."""

    @extend_schema(request=LockSerializer, responses=UndoRedoSerializer)
    def post(self, request, pk: int):
        _require_planner(request)
        plan = _plan(request, pk)
        serializer = LockSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = account_assignments_lock(
            plan=plan,
            account_ids=data["account_ids"],
            locked=data["locked"],
            actor=request.user,
            expected_version=_version(request),
        )
        return Response(result)


def _parse_bbox(raw: str) -> Polygon:
    try:
        west, south, east, north = (float(v) for v in raw.split(","))
    except ValueError:
        raise ApplicationError(
            "bbox must be four numbers: west,south,east,north in degrees.", {"bbox": [raw[:80]]}
        ) from None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ApplicationError(
            "bbox must satisfy -180 ≤ west < east ≤ 180 and -90 ≤ south < north ≤ 90.", {"bbox": [raw[:80]]}
        )
    return Polygon.from_bbox((west, south, east, north))


def _parse_polygon(value) -> Polygon | MultiPolygon:
    try:
        geometry = GEOSGeometry(json.dumps(value), srid=4326)
    except (GEOSException, ValueError, TypeError):
        raise ApplicationError(
            "polygon must be a GeoJSON Polygon or MultiPolygon in longitude/latitude.",
            {"polygon": ["invalid"]},
        ) from None
    if geometry.geom_type not in ("Polygon", "MultiPolygon"):
        raise ApplicationError(
            f"polygon must be a Polygon or MultiPolygon, not a {geometry.geom_type}.",
            {"polygon": ["wrong type"]},
        )
    if not geometry.valid:
        # A lasso drawn by hand can cross itself; buffer(0) repairs it into the area it encloses.
        geometry = geometry.buffer(0)
        if geometry.empty:
            raise ApplicationError("The lasso encloses no area.", {"polygon": ["empty"]})
    return geometry


class PlanSelectionView(APIView):
    """Accounts (that the user may see) and geography units inside a box or a lasso, with totals.

    GET ?bbox=west,south,east,north or POST {"polygon": GeoJSON}. Units are picked by their
    representative point, so a box catches the counties it mostly covers, not every one it grazes."""

    @extend_schema(
        parameters=[OpenApiParameter("bbox", str, description="west,south,east,north (degrees)")],
        responses=SelectionSerializer,
    )
    def get(self, request, pk: int):
        plan = _plan(request, pk)
        raw = request.query_params.get("bbox")
        if not raw:
            raise ApplicationError(
                "Give a bbox (west,south,east,north) or POST a polygon.", {"bbox": ["required"]}
            )
        return Response(self._select(request, plan, _parse_bbox(raw)))

    @extend_schema(request=SelectionPolygonSerializer, responses=SelectionSerializer)
    def post(self, request, pk: int):
        plan = _plan(request, pk)
        serializer = SelectionPolygonSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(self._select(request, plan, _parse_polygon(serializer.validated_data["polygon"])))

    def _select(self, request, plan: Plan, area) -> dict:
        accounts = account_list(user=request.user, plan=plan).filter(location__intersects=area)
        totals = accounts.aggregate(
            accounts=Count("id"),
            revenue=Sum("revenue"),
            potential=Sum("potential"),
            workload=Sum("workload_hours"),
        )
        account_ids = list(accounts.order_by("id").values_list("id", flat=True)[:SELECTION_MAX_IDS])
        units = GeoUnit.objects.filter(level__in=SELECTABLE_UNIT_LEVELS, centroid__intersects=area)
        visible = visible_territory_ids(user=request.user, plan=plan)
        if visible is not None:
            units = units.filter(
                pk__in=UnitAssignment.objects.filter(plan=plan, territory_id__in=visible).values("unit_id")
            )
        unit_ids = list(units.order_by("id").values_list("id", flat=True)[:SELECTION_MAX_IDS])
        # Per current owner, the exact sums of what a move would take away from it: the planner
        # updates the hierarchy from these at once and confirms with the metrics endpoint.
        by_territory = (
            Account.objects.filter(pk__any=account_ids)
            .annotate(
                owner=Subquery(
                    AccountAssignment.objects.filter(
                        plan=plan, role=AssignmentRole.PRIMARY, account_id=OuterRef("pk")
                    ).values("territory_id")[:1]
                )
            )
            .values("owner")
            .annotate(
                accounts=Count("id"),
                revenue=Sum("revenue"),
                potential=Sum("potential"),
                workload=Sum("workload_hours"),
            )
            .order_by("-accounts")
        )
        return {
            "account_ids": account_ids,
            "unit_ids": unit_ids,
            "truncated": totals["accounts"] > len(account_ids),
            "totals": {
                "accounts": totals["accounts"],
                "revenue": float(totals["revenue"] or 0),
                "potential": float(totals["potential"] or 0),
                "workload": float(totals["workload"] or 0),
                "units": len(unit_ids),
            },
            "by_territory": [
                {
                    "territory_id": r["owner"],
                    "accounts": r["accounts"],
                    "revenue": float(r["revenue"] or 0),
                    "potential": float(r["potential"] or 0),
                    "workload": float(r["workload"] or 0),
                }
                for r in by_territory
            ],
        }


class PlanMapView(APIView):
    """What the planner paints: each visible unit's territory and lock, territory colours, and a
    label point per leaf territory (a unit of its own nearest its middle, so the label sits inside
    it; the mean of its accounts when it has no units)."""

    @extend_schema(responses=PlanMapSerializer)
    def get(self, request, pk: int):
        plan = _plan(request, pk)
        visible = visible_territory_ids(user=request.user, plan=plan)
        territories = Territory.objects.filter(plan=plan)
        if visible is not None:
            territories = territories.filter(pk__in=visible)
        nodes = list(territories.values("id", "code", "name", "color", "parent_id"))
        parents = {n["parent_id"] for n in Territory.objects.filter(plan=plan).values("parent_id")}
        ids = [n["id"] for n in nodes]
        units = list(
            UnitAssignment.objects.filter(plan=plan, territory_id__in=ids)
            .order_by("unit_id")
            .values_list("unit_id", "territory_id", "locked")
        )
        labels = self._labels(plan, [n["id"] for n in nodes if n["id"] not in parents])
        return Response(
            {
                "plan": {"id": plan.pk, "name": plan.name, "status": plan.status, "version": plan.version},
                "territories": [{**n, "is_leaf": n["id"] not in parents} for n in nodes],
                "units": [[u, t, locked] for u, t, locked in units],
                "labels": labels,
            }
        )

    def _labels(self, plan: Plan, leaf_ids: list[int]) -> list[dict]:
        if not leaf_ids:
            return []
        ua, gu = UnitAssignment._meta.db_table, GeoUnit._meta.db_table
        sql = f"""
            WITH u AS (
                SELECT ua.territory_id, g.centroid FROM {ua} ua JOIN {gu} g ON g.id = ua.unit_id
                WHERE ua.plan_id = %(plan)s AND ua.territory_id = ANY(%(leaves)s)
            ), m AS (
                SELECT territory_id, ST_Centroid(ST_Collect(centroid)) AS middle FROM u GROUP BY territory_id
            )
            SELECT DISTINCT ON (u.territory_id) u.territory_id, ST_X(u.centroid), ST_Y(u.centroid)
            FROM u JOIN m USING (territory_id)
            ORDER BY u.territory_id, u.centroid <-> m.middle
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, {"plan": plan.pk, "leaves": leaf_ids})
            points = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
            missing = [t for t in leaf_ids if t not in points]
            if missing:
                cursor.execute(
                    f"""SELECT aa.territory_id, avg(ST_X(a.location)), avg(ST_Y(a.location))
                        FROM {AccountAssignment._meta.db_table} aa
                        JOIN {Account._meta.db_table} a ON a.id = aa.account_id
                        WHERE aa.plan_id = %s AND aa.role = %s AND aa.territory_id = ANY(%s)
                              AND a.location IS NOT NULL
                        GROUP BY aa.territory_id""",
                    [plan.pk, AssignmentRole.PRIMARY.value, missing],
                )
                points.update({row[0]: (row[1], row[2]) for row in cursor.fetchall()})
        return [
            {"territory_id": t, "lon": round(x, 5), "lat": round(y, 5)}
            for t, (x, y) in sorted(points.items())
        ]


def plan_is_editable(plan: Plan) -> bool:
    """Account and unit moves are refused only on archived plans (services._lock_plan)."""
    return plan.status != PlanStatus.ARCHIVED

"""Attainment, fairness and warnings over the API. Thin: parse the query, call a selector or
service; scoping happens in the selectors."""

from __future__ import annotations

import datetime as dt

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken
from analytics import selectors, services
from analytics.choices import Severity, WarningKind
from analytics.models import WarningCheck, WarningSign
from tessera_common.errors import ApplicationError

PERIOD = OpenApiParameter(
    "period", str, description="month, quarter, ytd (default) or a fiscal period name such as FY2026-Q1"
)
AS_OF = OpenApiParameter("as_of", OpenApiTypes.DATE, description="YYYY-MM-DD; today by default")
TERRITORY = OpenApiParameter("territory", int, description="Drill into this territory (its children or reps)")
LEVEL = OpenApiParameter("level", str, description="A level name (region, district, territory, ...) or rep")
COMPONENT = OpenApiParameter("component", str, description="new, renewal or upsell; all by default")


def _int(params, name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApplicationError(
            f"{name} must be a whole number.", {name: [f"not a number: {raw!r}"]}
        ) from None


def window_from(params) -> selectors.Window:
    """The period window of a request's query parameters; bad values name the field."""
    raw = params.get("as_of")
    as_of = None
    if raw:
        try:
            as_of = dt.date.fromisoformat(raw)
        except ValueError:
            raise ApplicationError(
                "as_of must be a date (YYYY-MM-DD).", {"as_of": [f"not a date: {raw!r}"]}
            ) from None
    return selectors.period_window(period=params.get("period") or None, as_of=as_of)


class AttainmentView(APIView):
    """Attainment and pacing by territory or rep for a period, scoped to the user's part of the plan."""

    @extend_schema(parameters=[PERIOD, AS_OF, TERRITORY, LEVEL, COMPONENT], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        params = request.query_params
        return Response(
            selectors.attainment_report(
                user=request.user,
                window=window_from(params),
                territory_id=_int(params, "territory"),
                level=params.get("level") or None,
                component=params.get("component") or None,
            )
        )


class AttainmentAccountsView(APIView):
    """The accounts behind a leaf territory's (or one rep's) bookings in a period."""

    @extend_schema(
        parameters=[
            PERIOD,
            AS_OF,
            OpenApiParameter("territory", int, required=True, description="A leaf territory"),
            OpenApiParameter("rep", int, description="Only this rep's share"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        params = request.query_params
        territory = _int(params, "territory")
        if territory is None:
            raise ApplicationError("Give the leaf territory.", {"territory": ["This field is required."]})
        return Response(
            selectors.attainment_accounts(
                user=request.user,
                window=window_from(params),
                territory_id=territory,
                rep_id=_int(params, "rep"),
            )
        )


class FairnessView(APIView):
    """Distribution of attainment with fairness figures (CV, Gini, max/min), territory balance and
    rep workload against capacity."""

    @extend_schema(parameters=[PERIOD, AS_OF, TERRITORY, LEVEL], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        params = request.query_params
        return Response(
            selectors.fairness_report(
                user=request.user,
                window=window_from(params),
                territory_id=_int(params, "territory"),
                level=params.get("level") or None,
            )
        )


class WarningSerializer(serializers.ModelSerializer):
    territory = serializers.SerializerMethodField()
    rep = serializers.SerializerMethodField()
    plan = serializers.SerializerMethodField()

    class Meta:
        model = WarningSign
        fields = [
            "id",
            "kind",
            "severity",
            "title",
            "detail",
            "suggestion",
            "action_url",
            "plan",
            "territory",
            "rep",
            "figures",
            "first_seen",
            "last_seen",
            "resolved_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_territory(self, obj) -> dict | None:
        t = obj.territory
        return {"id": t.pk, "code": t.code, "name": t.name} if t else None

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_rep(self, obj) -> dict | None:
        return {"id": obj.rep.pk, "name": obj.rep.name} if obj.rep else None

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_plan(self, obj) -> dict:
        return {"id": obj.plan.pk, "name": obj.plan.name}


class WarningCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = WarningCheck
        fields = [
            "id",
            "trigger",
            "status",
            "progress",
            "message",
            "error",
            "result",
            "created",
            "started_at",
            "finished_at",
        ]


class WarningViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Open warning signs (resolved ones with ?resolved=true), most severe first."""

    serializer_class = WarningSerializer

    def get_queryset(self):
        params = self.request.query_params
        resolved = (params.get("resolved") or "").lower() in ("1", "true", "yes")
        warnings = selectors.warning_list(user=self.request.user, include_resolved=resolved)
        kind, severity = params.get("kind"), params.get("severity")
        if kind:
            if kind not in WarningKind.values:
                raise ApplicationError(
                    f"Unknown kind {kind!r}.", {"kind": [f"use one of {WarningKind.values}"]}
                )
            warnings = warnings.filter(kind=kind)
        if severity:
            if severity not in Severity.values:
                raise ApplicationError(
                    f"Unknown severity {severity!r}.", {"severity": [f"use one of {Severity.values}"]}
                )
            warnings = warnings.filter(severity=severity)
        return warnings.order_by("resolved_at", "severity", "-last_seen", "id")

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, enum=WarningKind.values),
            OpenApiParameter("severity", str, enum=Severity.values),
            OpenApiParameter("resolved", bool, description="Include resolved warnings"),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses={202: WarningCheckSerializer})
    @action(detail=False, methods=["post"])
    def check(self, request):
        """Run the warning checks now, as a job; poll warnings/checks/{id}/."""
        if not getattr(request.user, "can_plan", False):
            raise PermissionDenied("Only planners and admins can run the warning checks.")
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None and "write" not in token.scopes:
            raise PermissionDenied("This API token lacks the 'write' scope.")
        check = services.warning_check_create(actor=request.user)
        return Response(WarningCheckSerializer(check).data, status=status.HTTP_202_ACCEPTED)


class WarningCheckViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of the warning checks: status, progress 0–100 and what they found."""

    serializer_class = WarningCheckSerializer

    def get_queryset(self):
        checks = WarningCheck.objects.order_by("-created", "-id")
        # Their summaries count warnings across the whole plan: planners' business.
        return checks if getattr(self.request.user, "can_plan", False) else checks.none()

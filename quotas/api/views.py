"""The quotas API: quota plans (allocation, quotas, relief, history, goals), adjustments with their
approvals, and bookings (list and bulk upsert). Scope comes from quotas.selectors; rules from
quotas.services."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import django_filters
from django.db.models import Sum
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, parsers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from accounts.api.serializers import BulkResultSerializer
from accounts.api.views import CSVParser, _bulk, _bulk_schema
from accounts.models import Rep
from accounts.permissions import can_edit_accounts
from quotas import selectors, services
from quotas.choices import AdjustmentStatus, Component, ReliefStatus
from quotas.imports import BOOKING_COLUMNS
from quotas.models import Booking, FiscalPeriod, Quota, QuotaAdjustment
from territories.models import Territory
from territories.selectors import plan_list
from tessera_common.errors import ApplicationError

from .serializers import (
    ActivityGoalSerializer,
    ActivityGoalSetSerializer,
    AdjustmentCreateSerializer,
    AdjustmentSerializer,
    AllocateSerializer,
    AllocationResultSerializer,
    BookingBulkRequestSerializer,
    BookingSerializer,
    DecisionSerializer,
    QuotaChangeSerializer,
    QuotaPlanCreateSerializer,
    QuotaPlanSerializer,
    QuotaPlanTransitionSerializer,
    QuotaSerializer,
    ReliefReportSerializer,
)

RELIEF_LINES_MAX = 1000

# What accounts.api.views._bulk needs to know about a kind of row: how to read a CSV body and which
# service upserts the rows. Bookings share the accounts' endpoint machinery and response shape.
BOOKING_BULK = SimpleNamespace(noun="booking", columns=BOOKING_COLUMNS, upsert=services.booking_bulk_upsert)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _require_planner(request) -> None:
    if not getattr(request.user, "can_plan", False):
        raise PermissionDenied(
            f"Only planners and admins may do this; your role ({request.user.get_role_display()}) may not."
        )


def _get(queryset, pk, field: str):
    """An object named in a request body, or a 400 naming the field (never a 500 or a bare 404)."""
    if pk is None:
        return None
    obj = queryset.filter(pk=pk).first()
    if obj is None:
        raise ApplicationError(f"No {field.replace('_', ' ')} with id {pk}.", {field: [f"unknown id {pk}"]})
    return obj


class QuotaFilter(django_filters.FilterSet):
    territory = django_filters.NumberFilter(field_name="territory_id")
    rep = django_filters.NumberFilter(field_name="rep_id")
    period = django_filters.NumberFilter(field_name="period_id")
    kind = django_filters.CharFilter(field_name="period__kind", help_text="year, quarter or month")
    component = django_filters.ChoiceFilter(choices=Component.choices)
    company = django_filters.BooleanFilter(field_name="territory", lookup_expr="isnull")

    class Meta:
        model = Quota
        fields = ["territory", "rep", "period", "component"]


class QuotaPlanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Quota plans over the territory plans the user may see."""

    serializer_class = QuotaPlanSerializer
    lookup_value_regex = r"\d+"
    filterset_class = None
    filterset_fields = ["status", "territory_plan", "fiscal_year"]

    def get_queryset(self):
        return (
            selectors.quota_plan_list(user=self.request.user)
            .select_related("allocated_by")
            .order_by("-created", "-id")
        )

    @extend_schema(request=QuotaPlanCreateSerializer, responses={201: QuotaPlanSerializer})
    def create(self, request):
        _require_planner(request)
        data = _valid(QuotaPlanCreateSerializer, request.data)
        quota_plan = services.quota_plan_create(
            name=data["name"],
            territory_plan=_get(plan_list(user=request.user), data["territory_plan"], "territory_plan"),
            fiscal_year=_get(FiscalPeriod.objects.all(), data["fiscal_year"], "fiscal_year"),
            targets=data["targets"],
            actor=request.user,
        )
        return Response(QuotaPlanSerializer(quota_plan).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=AllocateSerializer,
        responses={200: AllocationResultSerializer, 202: QuotaPlanSerializer},
    )
    @action(detail=True, methods=["post"])
    def allocate(self, request, pk=None):
        """Allocate the company targets top-down (potential, history or blend), over the months by
        last year's seasonality and to the reps, rounded to `unit`; replaces territory and rep quotas.
        Plans of 200 territories or more (or `background: true`) run in a worker: 202 with the plan,
        whose `allocation_job.status` goes queued → running → succeeded or failed."""
        _require_planner(request)
        quota_plan = self.get_object()
        data = _valid(AllocateSerializer, request.data)
        parameters = {k: data.get(k) for k in ("method", "blend_weight", "unit", "min_ratio", "max_ratio")}
        if data["background"] or services.allocation_runs_in_background(quota_plan):
            quota_plan = services.quota_plan_allocate_later(
                quota_plan=quota_plan, parameters=parameters, targets=data.get("targets"), actor=request.user
            )
            return Response(QuotaPlanSerializer(quota_plan).data, status=status.HTTP_202_ACCEPTED)
        result = services.quota_plan_allocate(
            quota_plan=quota_plan, targets=data.get("targets"), actor=request.user, **parameters
        )
        return Response(AllocationResultSerializer(result).data)

    @extend_schema(request=QuotaPlanTransitionSerializer, responses=QuotaPlanSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        """draft → approved → active → archived."""
        _require_planner(request)
        data = _valid(QuotaPlanTransitionSerializer, request.data)
        quota_plan = services.quota_plan_transition(
            quota_plan=self.get_object(), status=data["status"], actor=request.user
        )
        return Response(QuotaPlanSerializer(quota_plan).data)

    @extend_schema(
        responses=QuotaSerializer(many=True),
        filters=False,
        parameters=[
            OpenApiParameter("territory", int),
            OpenApiParameter("rep", int),
            OpenApiParameter("period", int),
            OpenApiParameter("kind", str, enum=["year", "quarter", "month"]),
            OpenApiParameter("component", str, enum=Component.values),
            OpenApiParameter("company", bool, description="Only the company-level rows (planners)."),
        ],
    )
    @action(detail=True, methods=["get"], filterset_class=None, serializer_class=QuotaSerializer)
    def quotas(self, request, pk=None):
        """Quotas by territory, rep, period and component: a manager their subtree, a rep their own."""
        quota_plan = self.get_object()
        scoped = selectors.quota_list(user=request.user, quota_plan=quota_plan).order_by(
            "period__start", "period__kind", "territory__code", "rep_id", "component", "id"
        )
        filterset = QuotaFilter(request.query_params, queryset=scoped, request=request)
        if not filterset.is_valid():
            raise ApplicationError(
                "The request has invalid filters.", {k: list(v) for k, v in filterset.errors.items()}
            )
        queryset = filterset.qs
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(QuotaSerializer(page, many=True).data)

    @extend_schema(responses=QuotaChangeSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None, serializer_class=QuotaChangeSerializer)
    def history(self, request, pk=None):
        """Every change of the quotas the user may see: who, when, old and new amount, why."""
        changes = selectors.quota_change_list(user=request.user, quota_plan=self.get_object()).order_by(
            "-at", "-id"
        )
        page = self.paginate_queryset(changes)
        return self.get_paginated_response(QuotaChangeSerializer(page, many=True).data)

    @extend_schema(responses=ReliefReportSerializer, filters=False)
    @action(detail=True, methods=["get"], filterset_class=None, serializer_class=ReliefReportSerializer)
    def relief(self, request, pk=None):
        """What moved mid-period with accounts, and why (the last 1,000 lines); the company total
        never changes."""
        quota_plan = self.get_object()
        lines = selectors.relief_list(user=request.user, quota_plan=quota_plan)
        moved: dict[str, Decimal] = {c: Decimal("0.00") for c in Component.values}
        for line in lines.filter(status=ReliefStatus.APPLIED).values_list("amounts", flat=True):
            for component, value in line.items():
                moved[component] += Decimal(value)
        targets = services.company_targets(quota_plan)
        year_total = {
            row["component"]: row["total"]
            for row in Quota.objects.filter(
                quota_plan=quota_plan, period=quota_plan.fiscal_year, territory__parent__isnull=True
            )
            .filter(territory__isnull=False, rep__isnull=True)
            .values("component")
            .annotate(total=Sum("amount"))
        }
        data = {
            "quota_plan": quota_plan.pk,
            "applied": lines.filter(status=ReliefStatus.APPLIED).count(),
            "skipped": lines.filter(status=ReliefStatus.SKIPPED).count(),
            "moved": {c: str(v) for c, v in moved.items()},
            "company_total_unchanged": quota_plan.allocated_at is None
            or all(year_total.get(c, Decimal(0)) == v for c, v in targets.items()),
            "lines": lines.order_by("-effective_from", "-id")[:RELIEF_LINES_MAX],
        }
        return Response(ReliefReportSerializer(data).data)

    @extend_schema(methods=["get"], responses=ActivityGoalSerializer(many=True), filters=False)
    @extend_schema(methods=["post"], request=ActivityGoalSetSerializer, responses=ActivityGoalSerializer)
    @action(
        detail=True, methods=["get", "post"], filterset_class=None, serializer_class=ActivityGoalSerializer
    )
    def goals(self, request, pk=None):
        """Activity and retention goals per territory (calls or meetings per week, retention rate)."""
        quota_plan = self.get_object()
        if request.method == "POST":
            data = _valid(ActivityGoalSetSerializer, request.data)
            territory = _get(
                Territory.objects.filter(plan=quota_plan.territory_plan), data["territory"], "territory"
            )
            goal = services.activity_goal_set(
                quota_plan=quota_plan,
                territory=territory,
                metric=data["metric"],
                target=data["target"],
                actor=request.user,
            )
            return Response(ActivityGoalSerializer(goal).data)
        goals = selectors.activity_goal_list(user=request.user, quota_plan=quota_plan).order_by(
            "territory__code", "metric"
        )
        page = self.paginate_queryset(goals)
        return self.get_paginated_response(ActivityGoalSerializer(page, many=True).data)


class AdjustmentFilter(django_filters.FilterSet):
    quota_plan = django_filters.NumberFilter(field_name="quota_plan_id")
    status = django_filters.ChoiceFilter(choices=AdjustmentStatus.choices)
    awaiting_me = django_filters.BooleanFilter(method="filter_awaiting", help_text="Only those I decide.")

    class Meta:
        model = QuotaAdjustment
        fields = ["quota_plan", "status"]

    def filter_awaiting(self, queryset, name, value):
        if not value:
            return queryset
        user = self.request.user
        ids = []
        for quota_plan in selectors.quota_plan_list(user=user).filter(
            pk__in=queryset.values("quota_plan_id")
        ):
            ids += list(
                selectors.adjustments_awaiting(user=user, quota_plan=quota_plan).values_list("pk", flat=True)
            )
        return queryset.filter(pk__in=ids)


class QuotaAdjustmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Proposals to move quota between siblings, with a reason; applied only when the next level up
    (the manager above the proposer, or a planner at the top) approves."""

    serializer_class = AdjustmentSerializer
    filterset_class = AdjustmentFilter
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return selectors.adjustment_list_all(user=self.request.user).order_by("-created", "-id")

    @extend_schema(request=AdjustmentCreateSerializer, responses={201: AdjustmentSerializer})
    def create(self, request):
        data = _valid(AdjustmentCreateSerializer, request.data)
        quota_plan = _get(selectors.quota_plan_list(user=request.user), data["quota_plan"], "quota_plan")
        territories = Territory.objects.filter(plan=quota_plan.territory_plan)
        adjustment = services.quota_adjustment_propose(
            quota_plan=quota_plan,
            actor=request.user,
            component=data["component"],
            period=_get(FiscalPeriod.objects.all(), data["period"], "period"),
            amount=data["amount"],
            reason=data["reason"],
            from_territory=_get(territories, data.get("from_territory"), "from_territory"),
            to_territory=_get(territories, data.get("to_territory"), "to_territory"),
            territory=_get(territories, data.get("territory"), "territory"),
            from_rep=_get(Rep.objects.all(), data.get("from_rep"), "from_rep"),
            to_rep=_get(Rep.objects.all(), data.get("to_rep"), "to_rep"),
        )
        return Response(AdjustmentSerializer(adjustment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DecisionSerializer, responses=AdjustmentSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve and apply (only the next level up; nobody can skip them)."""
        data = _valid(DecisionSerializer, request.data)
        adjustment = services.quota_adjustment_approve(
            adjustment=self.get_object(), actor=request.user, note=data["note"]
        )
        return Response(AdjustmentSerializer(self.get_queryset().get(pk=adjustment.pk)).data)

    @extend_schema(request=DecisionSerializer, responses=AdjustmentSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Reject with a note saying why (only the next level up)."""
        data = _valid(DecisionSerializer, request.data)
        adjustment = services.quota_adjustment_reject(
            adjustment=self.get_object(), actor=request.user, note=data["note"]
        )
        return Response(AdjustmentSerializer(self.get_queryset().get(pk=adjustment.pk)).data)


class BookingFilter(django_filters.FilterSet):
    account = django_filters.NumberFilter(field_name="account_id")
    account_external_id = django_filters.CharFilter(field_name="account__external_id")
    rep = django_filters.NumberFilter(field_name="rep_id")
    component = django_filters.ChoiceFilter(choices=Component.choices)
    booked_after = django_filters.DateFilter(field_name="booked_on", lookup_expr="gte")
    booked_before = django_filters.DateFilter(field_name="booked_on", lookup_expr="lte")
    external_id = django_filters.CharFilter()
    plan = django_filters.NumberFilter(
        method="filter_plan", help_text="Ownership in this plan decides scope."
    )

    class Meta:
        model = Booking
        fields = ["account", "rep", "component", "external_id"]

    def filter_plan(self, queryset, name, value):
        return queryset  # applied in get_queryset, where scope is decided


class BookingViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Closed-won deals from the CRM: those of accounts the user may see (and a rep's own)."""

    serializer_class = BookingSerializer
    filterset_class = BookingFilter

    def get_queryset(self):
        plan_id = self.request.query_params.get("plan")
        plan = None
        if plan_id and plan_id.isdigit():
            plan = plan_list(user=self.request.user).filter(pk=plan_id).first()
            if plan is None:
                raise ApplicationError(f"No plan with id {plan_id}.", {"plan": ["unknown id"]})
        return selectors.booking_list(user=self.request.user, plan=plan).order_by("booked_on", "id")

    @_bulk_schema("booking", BookingBulkRequestSerializer)
    @action(
        detail=False,
        methods=["post"],
        url_path="bulk",
        parser_classes=[parsers.JSONParser, CSVParser],
        filterset_class=None,
        serializer_class=BulkResultSerializer,
    )
    def bulk(self, request):
        """Upsert up to 10,000 bookings by external_id (JSON list or CSV), exactly as accounts/bulk/:
        per row created, updated, unchanged or error with field messages, and totals; `?atomic=true`
        writes nothing if any row fails."""
        if not can_edit_accounts(request.user):
            raise PermissionDenied("Only planners, admins and CRM integrations may load bookings.")
        return _bulk(request, BOOKING_BULK)

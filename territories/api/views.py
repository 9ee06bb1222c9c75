import re

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Account, ApiToken
from territories.balancing import balance_job_cancel, balance_job_create, balance_job_list
from territories.choices import AssignmentRole, AssignmentSource, PlanStatus
from territories.diff import DIFF_MAX_LIMIT, plan_diff
from territories.metrics import plan_metrics, territory_features
from territories.models import AccountAssignment, Plan, Territory
from territories.ownership import (
    account_ownership_on,
    account_ownership_timeline,
    account_visible,
    ownership_changes,
)
from territories.routing import route_leads
from territories.selectors import (
    assignment_list,
    geounit_features,
    plan_active_on,
    plan_list,
    territory_subtree_ids,
)
from territories.services import (
    account_assignments_move,
    plan_clone,
    plan_create,
    plan_publish,
    plan_transition,
    plan_update,
    unit_assignments_move,
)
from tessera_common.errors import ApplicationError

from .serializers import (
    AssignmentMoveResultSerializer,
    AssignmentMoveSerializer,
    AssignmentSerializer,
    BalanceJobSerializer,
    BalanceParametersSerializer,
    FeedPageSerializer,
    FeedQuerySerializer,
    GeoJSONFeatureCollectionSerializer,
    GeoUnitQuerySerializer,
    OwnershipOnDateSerializer,
    OwnershipQuerySerializer,
    OwnershipTimelineSerializer,
    PlanCloneSerializer,
    PlanCreateSerializer,
    PlanDiffQuerySerializer,
    PlanDiffSerializer,
    PlanMetricsSerializer,
    PlanPublishSerializer,
    PlanSerializer,
    PlanTransitionSerializer,
    PlanUpdateSerializer,
    RouteBatchResultSerializer,
    RouteBatchSerializer,
    RouteResultSerializer,
    RouteSerializer,
)


def _require_write_scope(request) -> None:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    if token is not None and "write" not in token.scopes:
        raise PermissionDenied("This API token lacks the 'write' scope.")


class PlanBalanceView(APIView):
    """Start a balance job on a plan. The answer is the queued job; poll /api/v1/jobs/{id}/."""

    @extend_schema(request=BalanceParametersSerializer, responses={202: BalanceJobSerializer})
    def post(self, request, pk: int):
        if not getattr(request.user, "can_plan", False):
            raise PermissionDenied("Only planners and admins can balance a plan.")
        _require_write_scope(request)
        plan = get_object_or_404(plan_list(user=request.user), pk=pk)
        parameters = BalanceParametersSerializer(data=request.data)
        parameters.is_valid(raise_exception=True)
        # Only what the client sent: the service fills in defaults that depend on the mode.
        sent = {k: v for k, v in parameters.validated_data.items() if k in request.data}
        job = balance_job_create(plan=plan, parameters=sent, actor=request.user)
        return Response(BalanceJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class BalanceJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Balance jobs: status, progress 0–100, result figures and the scenario produced."""

    serializer_class = BalanceJobSerializer

    def get_queryset(self):
        return balance_job_list(user=self.request.user).order_by("-created", "-id")

    @extend_schema(request=None, responses=BalanceJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued job, or ask a running one to stop."""
        _require_write_scope(request)
        job = balance_job_cancel(job=self.get_object(), actor=request.user)
        return Response(BalanceJobSerializer(job).data)


# ---------------------------------------------------------------------------------------------
# Plans


def _require_planner(request) -> None:
    if not getattr(request.user, "can_plan", False):
        raise PermissionDenied(
            "Only planners and admins may change plans; your role "
            f"({request.user.get_role_display()}) may only read them."
        )


_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d{1,9})"?\s*$')


def expected_version(request, data: dict) -> int:
    """The plan version a write is based on: `version` in the body or the If-Match header.
    Required, so that a client cannot overwrite edits it never saw."""
    body = data.get("version")
    raw = request.headers.get("If-Match")
    header = None
    if raw is not None:
        match = _IF_MATCH.match(raw)
        if match is None:
            raise ApplicationError(
                'If-Match must carry the plan version, e.g. If-Match: "7".',
                {"If-Match": ["expected the plan version as a number"]},
            )
        header = int(match.group(1))
    if body is None and header is None:
        raise ApplicationError(
            "Send the plan version you last read, as `version` in the body or as If-Match.",
            {"version": ["This field is required."]},
        )
    if body is not None and header is not None and body != header:
        raise ApplicationError(
            f"The body says version {body} but If-Match says {header}; send one version.",
            {"version": [f"differs from If-Match ({header})"]},
        )
    return body if body is not None else header


def _plan_response(plan: Plan, status_code: int = status.HTTP_200_OK) -> Response:
    response = Response(PlanSerializer(plan).data, status=status_code)
    response["ETag"] = f'"{plan.version}"'
    return response


def _valid(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class PlanFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=PlanStatus.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")
    # A plain number, so that asking about a plan the user may not see reveals nothing.
    based_on = django_filters.NumberFilter(field_name="based_on_id")

    class Meta:
        model = Plan
        fields = ["status", "name", "based_on"]


class PlanViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Plans (scenarios) the user may see. Writes carry the plan `version` (body or If-Match)
    and are refused with 409 when someone else changed the plan meanwhile."""

    serializer_class = PlanSerializer
    filterset_class = PlanFilter
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return plan_list(user=self.request.user).order_by("-created", "-id")

    def retrieve(self, request, *args, **kwargs):
        return _plan_response(self.get_object())

    @extend_schema(request=PlanCreateSerializer, responses={201: PlanSerializer})
    def create(self, request):
        _require_planner(request)
        data = _valid(PlanCreateSerializer, request.data)
        plan = plan_create(name=data["name"], description=data["description"], actor=request.user)
        return _plan_response(plan, status.HTTP_201_CREATED)

    def _update(self, request, *, full: bool):
        _require_planner(request)
        plan = self.get_object()
        data = _valid(PlanUpdateSerializer, request.data)
        if full and "name" not in data:
            raise ApplicationError(
                "PUT replaces the plan: send its name.", {"name": ["This field is required."]}
            )
        plan = plan_update(
            plan=plan,
            actor=request.user,
            expected_version=expected_version(request, data),
            name=data.get("name"),
            description=data.get("description", "" if full else None),
        )
        return _plan_response(plan)

    @extend_schema(request=PlanUpdateSerializer, responses=PlanSerializer)
    def update(self, request, pk=None):
        return self._update(request, full=True)

    @extend_schema(request=PlanUpdateSerializer, responses=PlanSerializer)
    def partial_update(self, request, pk=None):
        return self._update(request, full=False)

    @extend_schema(request=PlanCloneSerializer, responses={201: PlanSerializer})
    @action(detail=True, methods=["post"])
    def clone(self, request, pk=None):
        """A new draft scenario copied from this plan (territories, reps, rules, assignments)."""
        _require_planner(request)
        plan = self.get_object()
        data = _valid(PlanCloneSerializer, request.data)
        return _plan_response(plan_clone(plan=plan, name=data["name"], actor=request.user), 201)

    @extend_schema(request=PlanTransitionSerializer, responses=PlanSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        """Draft → in review → approved (or back to draft), or archived. Publishing is `publish/`."""
        _require_planner(request)
        plan = self.get_object()
        data = _valid(PlanTransitionSerializer, request.data)
        plan = plan_transition(
            plan=plan,
            status=data["status"],
            actor=request.user,
            expected_version=expected_version(request, data),
        )
        return _plan_response(plan)

    @extend_schema(request=PlanPublishSerializer, responses=PlanSerializer)
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Make an approved plan active from `effective_from`; the plan in effect then ends there."""
        _require_planner(request)
        plan = self.get_object()
        data = _valid(PlanPublishSerializer, request.data)
        plan = plan_publish(
            plan=plan,
            effective_from=data["effective_from"],
            actor=request.user,
            expected_version=expected_version(request, data),
        )
        return _plan_response(plan)

    @extend_schema(responses=PlanMetricsSerializer)
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        """Balance figures per visible territory: metrics, fair-share targets, deviations, reps."""
        return Response(plan_metrics(plan=self.get_object(), user=request.user))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "leaves", bool, description="Only leaf territories (default: the whole hierarchy)."
            )
        ],
        responses=GeoJSONFeatureCollectionSerializer,
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def territories(self, request, pk=None):
        """The plan's visible territories as GeoJSON: outline, hierarchy path, reps and metrics."""
        leaves = _query_bool(request, "leaves")
        return Response(territory_features(plan=self.get_object(), user=request.user, leaves_only=leaves))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "other", int, required=True, description="The plan to compare with (the baseline)."
            ),
            OpenApiParameter(
                "limit", int, description=f"Moved accounts listed (default 500, max {DIFF_MAX_LIMIT})."
            ),
        ],
        responses=PlanDiffSerializer,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def diff(self, request, pk=None):
        """What changes from plan `other` to this plan: moved accounts, disruption, metric deltas."""
        plan = self.get_object()
        query = _valid(PlanDiffQuerySerializer, request.query_params)
        other = plan_list(user=request.user).filter(pk=query["other"]).first()
        if other is None:
            raise ApplicationError(
                f"There is no plan {query['other']} you may see.", {"other": ["unknown plan"]}
            )
        return Response(plan_diff(plan=plan, other=other, user=request.user, limit=query["limit"]))


def _query_bool(request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ApplicationError(f"{name} must be true or false.", {name: ["expected true or false"]})


class AssignmentFilter(django_filters.FilterSet):
    territory = django_filters.NumberFilter(
        method="filter_territory", help_text="A territory id: its accounts, or its whole subtree's."
    )
    account = django_filters.NumberFilter(field_name="account_id")
    external_id = django_filters.CharFilter(field_name="account__external_id")
    source = django_filters.ChoiceFilter(choices=AssignmentSource.choices)
    role = django_filters.ChoiceFilter(choices=AssignmentRole.choices)
    locked = django_filters.BooleanFilter()

    class Meta:
        model = AccountAssignment
        fields = ["territory", "account", "external_id", "source", "role", "locked"]

    def filter_territory(self, queryset, name, value):
        territory = Territory.objects.filter(pk=value).first()
        if territory is None:
            return queryset.none()
        return queryset.filter(territory_id__in=territory_subtree_ids(territory=territory))


class PlanAssignmentsView(generics.ListAPIView):
    """GET: the plan's account assignments the user may see. POST: move accounts or geography units
    to a leaf territory (planners), recorded as one batch of Changes."""

    serializer_class = AssignmentSerializer
    filterset_class = AssignmentFilter

    def get_plan(self) -> Plan:
        return get_object_or_404(plan_list(user=self.request.user), pk=self.kwargs["pk"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AccountAssignment.objects.none()
        return assignment_list(user=self.request.user, plan=self.get_plan())

    @extend_schema(request=AssignmentMoveSerializer, responses=AssignmentMoveResultSerializer)
    def post(self, request, pk: int):
        _require_planner(request)
        plan = self.get_plan()
        data = _valid(AssignmentMoveSerializer, request.data)
        version = expected_version(request, data)
        territory = Territory.objects.filter(plan=plan, pk=data["territory"]).first()
        if territory is None:
            raise ApplicationError(
                f"Territory {data['territory']} is not part of plan '{plan.name}'.",
                {"territory": ["not in this plan"]},
            )
        common = {"plan": plan, "territory": territory, "actor": request.user, "lock": data["lock"]}
        if "account_ids" in data:
            result = account_assignments_move(
                **common, account_ids=data["account_ids"], expected_version=version
            )
        else:
            result = unit_assignments_move(**common, unit_ids=data["unit_ids"], expected_version=version)
        return Response(AssignmentMoveResultSerializer(result).data)


# ---------------------------------------------------------------------------------------------
# Lead routing


class RouteView(APIView):
    """Route one lead or account: the owning territory on a date, its hierarchy path, reps (primary
    first), the step of the resolver that decided, and a one-line explanation. Writes nothing."""

    required_scope = "route"

    @extend_schema(request=RouteSerializer, responses=RouteResultSerializer)
    def post(self, request):
        data = dict(_valid(RouteSerializer, request.data))
        at = data.pop("at", None)
        answer = route_leads(user=request.user, leads=[data], at=at)
        return Response(answer["results"][0])


class RouteBatchView(APIView):
    """Route up to 1,000 leads at once against the same plan; answers come in the order sent."""

    required_scope = "route"

    @extend_schema(request=RouteBatchSerializer, responses=RouteBatchResultSerializer)
    def post(self, request):
        data = _valid(RouteBatchSerializer, request.data)
        return Response(route_leads(user=request.user, leads=data["leads"], at=data.get("at")))


# ---------------------------------------------------------------------------------------------
# Geography units


class GeoUnitListView(APIView):
    """Geography units as GeoJSON (simplified outlines), by level and bounding box; with `plan`, each
    unit's territory in that plan (when the user may see it)."""

    @extend_schema(parameters=[GeoUnitQuerySerializer], responses=GeoJSONFeatureCollectionSerializer)
    def get(self, request):
        query = _valid(GeoUnitQuerySerializer, request.query_params)
        plan = None
        if "plan" in query:
            plan = plan_list(user=request.user).filter(pk=query["plan"]).first()
            if plan is None:
                raise ApplicationError(
                    f"There is no plan {query['plan']} you may see.", {"plan": ["unknown plan"]}
                )
        return Response(
            geounit_features(
                user=request.user,
                level=query.get("level"),
                bbox=query.get("in_bbox"),
                code=query.get("code"),
                plan=plan,
                limit=query["limit"],
            )
        )


# ---------------------------------------------------------------------------------------------
# Ownership and the change feed


class AccountOwnershipView(APIView):
    """Who owned an account on a date and why (`at`), or its whole ownership timeline across
    published plans (without `at`)."""

    @extend_schema(
        parameters=[OwnershipQuerySerializer],
        responses={
            200: PolymorphicProxySerializer(
                component_name="AccountOwnership",
                serializers=[OwnershipOnDateSerializer, OwnershipTimelineSerializer],
                resource_type_field_name=None,
            )
        },
    )
    def get(self, request, pk: int):
        query = _valid(OwnershipQuerySerializer, request.query_params)
        account = Account.objects.filter(pk=pk).first()
        at = query.get("at")
        plan = plan_active_on(date=at) if at else plan_active_on()
        if account is None or not account_visible(user=request.user, account=account, plan=plan):
            raise NotFound("No account with this id that you may see.")
        if at is not None:
            return Response(OwnershipOnDateSerializer(account_ownership_on(account=account, date=at)).data)
        return Response(OwnershipTimelineSerializer(account_ownership_timeline(account=account)).data)


class ChangeFeedView(APIView):
    """Ownership changes in the order they became known: moves of accounts in published plans and
    the owners that change when a plan is published. Follow `next_cursor` to keep a CRM in sync."""

    @extend_schema(parameters=[FeedQuerySerializer], responses=FeedPageSerializer)
    def get(self, request):
        query = _valid(FeedQuerySerializer, request.query_params)
        page = ownership_changes(user=request.user, cursor=query.get("cursor") or None, limit=query["limit"])
        return Response(FeedPageSerializer(page).data)

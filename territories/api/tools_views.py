"""The planner's editing tools over the API: territories (create, rename, merge, split, reps) and
assignment rules (list, edit, preview). Thin: selectors scope what a user sees, services do the
work, check the plan version and record Changes. Only planners and admins edit."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken
from territories import services
from territories.models import AssignmentRule, Plan, Territory, TerritoryMembership
from territories.selectors import plan_list, rep_list, rule_list, territory_list, visible_territory_ids
from tessera_common.errors import ApplicationError

from .tools_serializers import (
    AssignmentRuleDetailSerializer,
    AssignmentRuleSerializer,
    EditableTerritorySerializer,
    EditResultSerializer,
    MembersSerializer,
    MembersSetSerializer,
    RepCandidateSerializer,
    RuleInputSerializer,
    RulePreviewInputSerializer,
    RulePreviewSerializer,
    RuleSavedSerializer,
    TerritoryCreateSerializer,
    TerritoryMergeSerializer,
    TerritorySplitSerializer,
    TerritoryUpdateSerializer,
)


def _require_planner(request, what: str) -> None:
    if not getattr(request.user, "can_plan", False):
        raise PermissionDenied(f"Only planners and admins can {what}.")
    token = request.auth if isinstance(request.auth, ApiToken) else None
    if token is not None and "write" not in token.scopes:
        raise PermissionDenied("This API token lacks the 'write' scope.")


def _valid(serializer_class, request, *, partial: bool = False) -> dict:
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _expected_version(request, data: dict) -> int:
    """Every edit names the plan version it was based on: in the body, or as If-Match."""
    version = data.get("version")
    if version is None:
        header = (request.headers.get("If-Match") or "").strip().strip('"')
        if header:
            try:
                version = int(header)
            except ValueError:
                raise ApplicationError(
                    "If-Match must be the plan version, a whole number.", {"version": ["not a number"]}
                ) from None
    if version is None:
        raise ApplicationError(
            "Send the plan version your edit is based on (version in the body, or If-Match).",
            {"version": ["This field is required."]},
        )
    return int(version)


def _plan_for(user, pk: int) -> Plan:
    return get_object_or_404(plan_list(user=user), pk=pk)


def _territory_for(user, pk: int) -> Territory:
    """A territory the user may see (404 otherwise: its existence is not theirs to know)."""
    territory = get_object_or_404(
        Territory.objects.select_related("plan", "parent", "manager"), pk=pk, plan__in=plan_list(user=user)
    )
    visible = visible_territory_ids(user=user, plan=territory.plan)
    if visible is not None and territory.pk not in visible:
        raise Http404
    return territory


def _territory_in_plan(user, plan: Plan, pk, field: str) -> Territory | None:
    """Resolve an id sent in field `field` to a territory of `plan`, naming the field if it is not."""
    if pk is None:
        return None
    territory = territory_list(user=user, plan=plan).filter(pk=pk).first()
    if territory is None:
        raise ApplicationError(
            f"Plan '{plan.name}' has no territory with id {pk}.", {field: [f"no territory {pk} in this plan"]}
        )
    return territory


def _with_reps(queryset):
    return queryset.prefetch_related(
        Prefetch("memberships", queryset=TerritoryMembership.objects.select_related("rep"))
    ).annotate(child_count=Count("children", distinct=True))


def _territory_data(territory: Territory) -> dict:
    fresh = _with_reps(Territory.objects.select_related("plan", "manager")).get(pk=territory.pk)
    return EditableTerritorySerializer(fresh).data


class TerritoryListView(ListAPIView):
    """GET: a plan's territories (?plan=<id>, required), with reps and whether each is a leaf.
    POST: create a territory in a draft or in-review plan."""

    serializer_class = EditableTerritorySerializer
    filter_backends: list = []

    def get_queryset(self):
        plan_id = self.request.query_params.get("plan") or ""
        if not (plan_id.isascii() and plan_id.isdigit()):
            raise ApplicationError("Name the plan: ?plan=<id>.", {"plan": ["This field is required."]})
        plan = _plan_for(self.request.user, int(plan_id))
        return _with_reps(territory_list(user=self.request.user, plan=plan).select_related("plan")).order_by(
            "code", "id"
        )

    @extend_schema(
        parameters=[OpenApiParameter("plan", OpenApiTypes.INT, required=True)],
        responses=EditableTerritorySerializer(many=True),
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=TerritoryCreateSerializer, responses={201: EditableTerritorySerializer})
    def post(self, request):
        _require_planner(request, "edit territories")
        data = _valid(TerritoryCreateSerializer, request)
        plan = _plan_for(request.user, data["plan"])
        territory = services.territory_create(
            plan=plan,
            name=data["name"],
            code=data["code"],
            parent=_territory_in_plan(request.user, plan, data.get("parent"), "parent"),
            color=data.get("color", ""),
            level_name=data.get("level_name") or "territory",
            actor=request.user,
            expected_version=_expected_version(request, data),
        )
        return Response(_territory_data(territory), status=status.HTTP_201_CREATED)


class TerritoryDetailView(APIView):
    """One territory: read it, rename / recode / recolour / re-parent it, or delete it when empty."""

    @extend_schema(responses=EditableTerritorySerializer)
    def get(self, request, pk: int):
        return Response(_territory_data(_territory_for(request.user, pk)))

    @extend_schema(request=TerritoryUpdateSerializer, responses=EditableTerritorySerializer)
    def patch(self, request, pk: int):
        _require_planner(request, "edit territories")
        territory = _territory_for(request.user, pk)
        data = _valid(TerritoryUpdateSerializer, request)
        fields = {k: data[k] for k in ("name", "code", "color", "level_name") if k in data}
        if "parent" in data:
            fields["parent"] = _territory_in_plan(request.user, territory.plan, data["parent"], "parent")
        territory = services.territory_update(
            territory=territory,
            actor=request.user,
            expected_version=_expected_version(request, data),
            **fields,
        )
        return Response(_territory_data(territory))

    @extend_schema(request=None, responses=EditResultSerializer)
    def delete(self, request, pk: int):
        _require_planner(request, "edit territories")
        territory = _territory_for(request.user, pk)
        version = services.territory_delete(
            territory=territory, actor=request.user, expected_version=_expected_version(request, request.data)
        )
        return Response({"version": version})


class TerritoryMergeView(APIView):
    """Fold this territory into another (`into`): accounts, units, rules, reps and children move."""

    @extend_schema(request=TerritoryMergeSerializer, responses=EditResultSerializer)
    def post(self, request, pk: int):
        _require_planner(request, "edit territories")
        territory = _territory_for(request.user, pk)
        data = _valid(TerritoryMergeSerializer, request)
        into = _territory_in_plan(request.user, territory.plan, data["into"], "into")
        result = services.territory_merge(
            territory=territory,
            into=into,
            actor=request.user,
            expected_version=_expected_version(request, data),
        )
        into = result.pop("into")
        return Response({**result, "territory": _territory_data(into)})


class TerritorySplitView(APIView):
    """Split a leaf: a new sibling takes the chosen accounts and geography units."""

    @extend_schema(request=TerritorySplitSerializer, responses={201: EditResultSerializer})
    def post(self, request, pk: int):
        _require_planner(request, "edit territories")
        territory = _territory_for(request.user, pk)
        data = _valid(TerritorySplitSerializer, request)
        result = services.territory_split(
            territory=territory,
            name=data["name"],
            code=data["code"],
            color=data.get("color", ""),
            account_ids=data.get("account_ids", []),
            unit_ids=data.get("unit_ids", []),
            actor=request.user,
            expected_version=_expected_version(request, data),
        )
        result["territory"] = _territory_data(result["territory"])
        return Response(result, status=status.HTTP_201_CREATED)


class TerritoryMembersView(APIView):
    """The reps attached to a territory, with role and share; PUT replaces the whole list."""

    def _body(self, territory: Territory) -> dict:
        data = _territory_data(territory)
        return {"territory": territory.pk, "members": data["reps"], "version": data["version"]}

    @extend_schema(responses=MembersSerializer)
    def get(self, request, pk: int):
        return Response(self._body(_territory_for(request.user, pk)))

    @extend_schema(request=MembersSetSerializer, responses=MembersSerializer)
    def put(self, request, pk: int):
        _require_planner(request, "attach reps")
        territory = _territory_for(request.user, pk)
        data = _valid(MembersSetSerializer, request)
        territory = services.territory_members_set(
            territory=territory,
            members=data["members"],
            actor=request.user,
            expected_version=_expected_version(request, data),
        )
        return Response(self._body(territory))


class RepCandidateListView(ListAPIView):
    """Reps a planner may attach, filtered by ?search= (name or external id); active ones first."""

    serializer_class = RepCandidateSerializer
    filter_backends: list = []

    def get_queryset(self):
        reps = rep_list(user=self.request.user)
        # PostgreSQL text cannot hold NUL; no name contains one, so it only ever narrows to nothing.
        search = (self.request.query_params.get("search") or "").replace("\x00", "").strip()
        if search:
            reps = reps.filter(Q(name__icontains=search) | Q(external_id__icontains=search))
        return reps.order_by("-active", "name", "id")

    @extend_schema(parameters=[OpenApiParameter("search", OpenApiTypes.STR)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def _rule_values(data: dict, user, plan: Plan) -> dict:
    values = {k: data[k] for k in ("name", "priority", "active", "conditions", "postal_codes") if k in data}
    if "territory" in data:
        values["territory"] = _territory_in_plan(user, plan, data["territory"], "territory")
    return values


def _rule_data(rule: AssignmentRule | None) -> dict | None:
    if rule is None:
        return None
    return AssignmentRuleDetailSerializer(
        AssignmentRule.objects.select_related("territory").get(pk=rule.pk)
    ).data


class PlanRuleListView(ListAPIView):
    """GET: a plan's assignment rules in the order they are tried. POST: add a rule; the accounts
    it now decides move at once (see POST .../rules/preview/ for the count before saving)."""

    serializer_class = AssignmentRuleSerializer
    filter_backends: list = []

    def get_queryset(self):
        plan = _plan_for(self.request.user, self.kwargs["pk"])
        return rule_list(user=self.request.user, plan=plan).annotate(postal_code_count=Count("postal_codes"))

    @extend_schema(request=RuleInputSerializer, responses={201: RuleSavedSerializer})
    def post(self, request, pk: int):
        _require_planner(request, "edit rules")
        plan = _plan_for(request.user, pk)
        data = _valid(RuleInputSerializer, request)
        values = _rule_values(data, request.user, plan)
        result = services.rule_add(
            plan=plan,
            territory=values.get("territory"),
            name=values.get("name", ""),
            conditions=values.get("conditions", []),
            priority=values.get("priority", 100),
            postal_codes=values.get("postal_codes") or [],
            active=values.get("active", True),
            actor=request.user,
            expected_version=_expected_version(request, data),
        )
        return Response({**result, "rule": _rule_data(result["rule"])}, status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    """One rule with its postal-code list; PATCH changes it and DELETE removes it, each moving the
    accounts whose resolved owner changes."""

    def _rule(self, request, pk: int) -> AssignmentRule:
        rule = get_object_or_404(AssignmentRule.objects.select_related("plan", "territory"), pk=pk)
        if (
            not rule_list(user=request.user, plan=rule.plan).filter(pk=pk).exists()
            or not plan_list(user=request.user).filter(pk=rule.plan_id).exists()
        ):
            raise Http404
        return rule

    @extend_schema(responses=AssignmentRuleDetailSerializer)
    def get(self, request, pk: int):
        return Response(_rule_data(self._rule(request, pk)))

    @extend_schema(request=RuleInputSerializer, responses=RuleSavedSerializer)
    def patch(self, request, pk: int):
        _require_planner(request, "edit rules")
        rule = self._rule(request, pk)
        data = _valid(RuleInputSerializer, request)
        result = services.rule_update(
            rule=rule,
            values=_rule_values(data, request.user, rule.plan),
            actor=request.user,
            expected_version=_expected_version(request, data),
        )
        return Response({**result, "rule": _rule_data(result["rule"])})

    @extend_schema(request=None, responses=RuleSavedSerializer)
    def delete(self, request, pk: int):
        _require_planner(request, "edit rules")
        rule = self._rule(request, pk)
        result = services.rule_delete(
            rule=rule, actor=request.user, expected_version=_expected_version(request, request.data)
        )
        return Response(result)


class PlanRulePreviewView(APIView):
    """How many accounts a rule edit would move, per territory, with a sample; nothing is saved.
    Body: a rule (as for POST .../rules/), or {"rule": id, ...changes}, or {"rule": id, "delete": true}."""

    @extend_schema(request=RulePreviewInputSerializer, responses=RulePreviewSerializer)
    def post(self, request, pk: int):
        _require_planner(request, "edit rules")
        plan = _plan_for(request.user, pk)
        data = _valid(RulePreviewInputSerializer, request)
        rule = None
        if data.get("rule") is not None:
            rule = rule_list(user=request.user, plan=plan).filter(pk=data["rule"]).first()
            if rule is None:
                raise ApplicationError(
                    f"Plan '{plan.name}' has no rule with id {data['rule']}.", {"rule": ["not in this plan"]}
                )
        elif data.get("delete"):
            raise ApplicationError("Name the rule to delete.", {"rule": ["This field is required."]})
        values = _rule_values(data, request.user, plan)
        if rule is None:
            values.setdefault("territory", None)
            values.setdefault("name", "")
            values.setdefault("conditions", [])
            values.setdefault("postal_codes", [])
        preview = services.rule_preview(plan=plan, values=values, rule=rule, delete=data.get("delete", False))
        return Response(preview)

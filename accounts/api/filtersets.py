"""Query filters of accounts/ and reps/. A bad value is a 400 naming the parameter, never ignored."""

from __future__ import annotations

import django_filters as filters
from django.contrib.gis.geos import Polygon
from django.core.exceptions import ValidationError
from django.utils.functional import cached_property

from accounts import selectors
from accounts.choices import AccountStatus, Segment
from accounts.models import Account, Rep
from tessera_common.errors import ApplicationError

# Every ordering ends with the id, so that pages of equal names never overlap or skip rows.
ACCOUNT_ORDERING = (
    "name",
    "external_id",
    "revenue",
    "potential",
    "employees",
    "workload_hours",
    "created",
    "updated",
    "id",
)
REP_ORDERING = ("name", "external_id", "capacity_fte", "created", "updated", "id")


class StableOrderingFilter(filters.OrderingFilter):
    def filter(self, qs, value):
        qs = super().filter(qs, value)
        ordering = list(qs.query.order_by) or ["name"]
        if not any(field.lstrip("-") == "id" for field in ordering):
            ordering.append("id")
        return qs.order_by(*ordering)


def _bbox(value: str) -> Polygon:
    parts = [p.strip() for p in str(value).split(",")]
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError:
        raise ValidationError("Give in_bbox as four numbers: min_lon,min_lat,max_lon,max_lat.") from None
    if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
        raise ValidationError(
            "in_bbox needs min_lon < max_lon within -180..180 and min_lat < max_lat within -90..90."
        )
    return Polygon.from_bbox((minx, miny, maxx, maxy))


class _PlanScoped(filters.FilterSet):
    """Filters that follow a plan's assignments (territory, rep) use the `plan` parameter, or the
    plan in effect today; the viewset scopes the list by the same plan."""

    plan = filters.NumberFilter(
        method="filter_plan",
        help_text=(
            "Plan id whose assignments decide scope and the territory/rep filters; "
            "default: the plan in effect today."
        ),
    )
    territory = filters.NumberFilter(
        method="filter_territory",
        help_text="Territory id: its accounts and those of every territory under it.",
    )

    @cached_property
    def scope_plan(self):
        plan = selectors.scope_plan(user=self.request.user, plan_id=self.data.get("plan"))
        if plan is None:
            raise ApplicationError(
                "No plan is in effect today; give the plan parameter.", {"plan": ["Give a plan id."]}
            )
        return plan

    def filter_plan(self, queryset, name, value):
        return queryset  # applied by the viewset's scope, see selectors.scope_plan

    def filter_territory(self, queryset, name, value):
        ids = selectors.territory_subtree(
            user=self.request.user, plan=self.scope_plan, territory_id=int(value)
        )
        return self.filter_territory_ids(queryset, ids)

    def filter_territory_ids(self, queryset, ids):
        raise NotImplementedError


class AccountFilterSet(_PlanScoped):
    rep = filters.NumberFilter(
        method="filter_rep", help_text="Rep id: accounts of the territories this rep belongs to."
    )
    industry = filters.CharFilter(field_name="industry", lookup_expr="iexact")
    segment = filters.MultipleChoiceFilter(choices=Segment.choices)
    status = filters.MultipleChoiceFilter(choices=AccountStatus.choices)
    external_id = filters.BaseInFilter(
        field_name="external_id", help_text="One or more external ids, comma-separated."
    )
    postal_code = filters.CharFilter(field_name="postal_code", lookup_expr="startswith")
    updated_after = filters.IsoDateTimeFilter(field_name="updated", lookup_expr="gte")
    in_bbox = filters.CharFilter(
        method="filter_in_bbox", help_text="min_lon,min_lat,max_lon,max_lat (WGS 84)."
    )
    q = filters.CharFilter(
        method="filter_q", help_text="Text in the name, external id or city, or a postal code prefix."
    )
    ordering = StableOrderingFilter(fields=ACCOUNT_ORDERING)

    class Meta:
        model = Account
        fields: list[str] = []

    def filter_territory_ids(self, queryset, ids):
        return selectors.account_owned_by(accounts=queryset, plan=self.scope_plan, territory_ids=ids)

    def filter_rep(self, queryset, name, value):
        ids = selectors.territories_of_rep(plan=self.scope_plan, rep_id=int(value))
        return selectors.account_owned_by(accounts=queryset, plan=self.scope_plan, territory_ids=ids)

    def filter_in_bbox(self, queryset, name, value):
        try:
            box = _bbox(value)
        except ValidationError as exc:
            raise ApplicationError(exc.messages[0], {"in_bbox": exc.messages}) from None
        return queryset.filter(location__intersects=box)

    def filter_q(self, queryset, name, value):
        return selectors.account_search(accounts=queryset, text=value)


class RepFilterSet(_PlanScoped):
    active = filters.BooleanFilter()
    external_id = filters.BaseInFilter(
        field_name="external_id", help_text="One or more external ids, comma-separated."
    )
    manager = filters.CharFilter(field_name="manager__external_id", help_text="The manager's external id.")
    specialty = filters.CharFilter(
        field_name="specialties", lookup_expr="icontains", method="filter_specialty"
    )
    q = filters.CharFilter(method="filter_q", help_text="Text in the name, external id or email.")
    ordering = StableOrderingFilter(fields=REP_ORDERING)

    class Meta:
        model = Rep
        fields: list[str] = []

    def filter_territory_ids(self, queryset, ids):
        return queryset.filter(memberships__territory_id__in=ids).distinct()

    def filter_specialty(self, queryset, name, value):
        return queryset.filter(specialties__contains=[value.strip()])

    def filter_q(self, queryset, name, value):
        from django.db.models import Q

        text = value.strip()
        if not text:
            return queryset
        return queryset.filter(
            Q(name__icontains=text) | Q(external_id__icontains=text) | Q(email__icontains=text)
        )

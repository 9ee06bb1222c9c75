"""Browser pages for accounts and reps: searchable, filterable lists and detail pages with a small map.

They live in territories (not accounts/views.py) because who may see an account or rep, who owns it
and why are questions about plans: the scoped selectors and the resolver are here, and the import
direction (territories → accounts) stays intact. Ownership means the plan in effect today."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, DecimalField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts.choices import AccountStatus, Segment

from . import comparison, selectors
from .choices import AssignmentRole, ChangeKind, PlanStatus
from .models import AccountAssignment, Change, Territory, TerritoryMembership
from .resolver import resolve_account

PAGE_SIZE = 50
ACCOUNT_SORTS = {
    "name": ("name", "id"),
    "-revenue": ("-revenue", "id"),
    "-potential": ("-potential", "id"),
    "external_id": ("external_id",),
}


def _querystring(params, **changes) -> str:
    merged = {key: value for key, value in params.items() if value}
    merged.update({key: value for key, value in changes.items()})
    return urlencode({key: value for key, value in merged.items() if value not in (None, "")})


def _territory_filter(request, plan) -> tuple[Territory | None, list]:
    """The chosen territory of today's plan (if the user may see it) and the options to choose."""
    if plan is None:
        return None, []
    options = list(selectors.territory_list(user=request.user, plan=plan).order_by("code"))
    raw = request.GET.get("territory", "")
    chosen = next((t for t in options if str(t.pk) == raw), None)
    return chosen, options


def _page(request, queryset):
    paginator = Paginator(queryset, PAGE_SIZE)
    return paginator.get_page(request.GET.get("page"))


@login_required
@require_GET
def account_list(request):
    plan = selectors.plan_active_on()
    accounts = selectors.account_list(user=request.user)
    params = {
        key: request.GET.get(key, "").strip()
        for key in ("q", "segment", "industry", "status", "territory", "sort")
    }
    if params["q"]:
        q = params["q"]
        accounts = accounts.filter(
            Q(name__icontains=q) | Q(external_id__icontains=q) | Q(postal_code__istartswith=q)
        )
    if params["segment"] in Segment.values:
        accounts = accounts.filter(segment=params["segment"])
    if params["status"] in AccountStatus.values:
        accounts = accounts.filter(status=params["status"])
    industries = list(
        selectors.account_list(user=request.user)
        .exclude(industry="")
        .order_by("industry")
        .values_list("industry", flat=True)
        .distinct()
    )
    if params["industry"]:
        accounts = accounts.filter(industry__iexact=params["industry"])
    territory, territory_options = _territory_filter(request, plan)
    if territory is not None:
        subtree = selectors.territory_subtree_ids(territory=territory)
        accounts = accounts.filter(
            pk__in=AccountAssignment.objects.filter(
                plan=plan, territory_id__in=subtree, role=AssignmentRole.PRIMARY
            ).values("account_id")
        )
    if plan is not None:
        owner = AccountAssignment.objects.filter(
            plan=plan, account=OuterRef("pk"), role=AssignmentRole.PRIMARY
        )
        accounts = accounts.annotate(
            owner_code=Subquery(owner.values("territory__code")[:1]),
            owner_name=Subquery(owner.values("territory__name")[:1]),
            owner_id=Subquery(owner.values("territory_id")[:1]),
        )
    accounts = accounts.order_by(*ACCOUNT_SORTS.get(params["sort"], ACCOUNT_SORTS["name"]))
    page = _page(request, accounts.defer("location", "attributes"))
    return render(
        request,
        "accounts/account_list.html",
        {
            "page": page,
            "plan": plan,
            "params": params,
            "segments": Segment.choices,
            "statuses": AccountStatus.choices,
            "industries": industries,
            "territory_options": territory_options,
            "sorts": [
                ("name", "Name"),
                ("-revenue", "Revenue, largest first"),
                ("-potential", "Potential, largest first"),
                ("external_id", "External id"),
            ],
            "filtered": any(params[k] for k in ("q", "segment", "industry", "status", "territory")),
            "query_without_page": _querystring(params),
        },
    )


@login_required
@require_GET
def account_detail(request, pk: int):
    account = get_object_or_404(selectors.account_list(user=request.user).select_related("parent"), pk=pk)
    plan = selectors.plan_active_on()
    owner = why = None
    reps = []
    if plan is not None:
        owner = (
            AccountAssignment.objects.filter(plan=plan, account=account, role=AssignmentRole.PRIMARY)
            .select_related("territory", "rule", "unit")
            .defer("unit__geom", "unit__geom_simplified")
            .first()
        )
        if owner is not None:
            reps = list(
                TerritoryMembership.objects.filter(territory=owner.territory)
                .select_related("rep")
                .order_by("role", "rep__name")
            )
        why = resolve_account(plan=plan, account=account)
    visible_plans = selectors.plan_list(user=request.user)
    published = (
        AccountAssignment.objects.filter(
            account=account,
            role=AssignmentRole.PRIMARY,
            plan__in=visible_plans.filter(
                status__in=[PlanStatus.ACTIVE, PlanStatus.ARCHIVED], published_at__isnull=False
            ),
        )
        .select_related("plan", "territory")
        .order_by("-plan__effective_from")
    )
    changes = (
        Change.objects.filter(
            account=account,
            plan__in=visible_plans,
            kind__in=[ChangeKind.ACCOUNT_MOVED, ChangeKind.LOCK_CHANGED],
        )
        .select_related("plan", "actor", "territory_from", "territory_to")
        .order_by("-at", "-id")[:50]
    )
    children = selectors.account_list(user=request.user).filter(parent=account).order_by("name")[:20]
    points = []
    if account.location is not None:
        points.append({"lon": account.location.x, "lat": account.location.y, "label": account.name})
    outlines = comparison.territory_outlines(plan=plan, territory_ids=[owner.territory_id] if owner else [])
    return render(
        request,
        "accounts/account_detail.html",
        {
            "account": account,
            "plan": plan,
            "owner": owner,
            "reps": reps,
            "why": why,
            "published": published,
            "changes": changes,
            "children": children,
            "map_config": {"states_url": reverse("map-states"), "points": points, "outlines": outlines},
        },
    )


@login_required
@require_GET
def rep_list(request):
    plan = selectors.plan_active_on()
    reps = selectors.rep_list(user=request.user)
    params = {key: request.GET.get(key, "").strip() for key in ("q", "active", "territory")}
    if params["q"]:
        q = params["q"]
        reps = reps.filter(
            Q(name__icontains=q) | Q(external_id__icontains=q) | Q(home_postal_code__istartswith=q)
        )
    if params["active"] == "yes":
        reps = reps.filter(active=True)
    elif params["active"] == "no":
        reps = reps.filter(active=False)
    territory, territory_options = _territory_filter(request, plan)
    if territory is not None:
        subtree = selectors.territory_subtree_ids(territory=territory)
        reps = reps.filter(
            pk__in=TerritoryMembership.objects.filter(territory_id__in=subtree).values("rep_id")
        )
    page = _page(request, reps.order_by("name", "id").defer("home_location"))
    rows = []
    page_reps = list(page.object_list)
    memberships: dict[int, list] = {}
    figures: dict[int, dict] = {}
    if plan is not None and page_reps:
        for m in (
            TerritoryMembership.objects.filter(territory__plan=plan, rep__in=page_reps)
            .select_related("territory")
            .order_by("territory__code")
        ):
            memberships.setdefault(m.rep_id, []).append(m)
        money = DecimalField(max_digits=20, decimal_places=2)
        for row in (
            AccountAssignment.objects.filter(
                plan=plan, role=AssignmentRole.PRIMARY, territory__memberships__rep__in=page_reps
            )
            .values("territory__memberships__rep_id")
            .annotate(
                accounts=Count("id", distinct=True),
                revenue=Coalesce(Sum("account__revenue"), 0, output_field=money),
            )
        ):
            figures[row["territory__memberships__rep_id"]] = row
    for rep in page_reps:
        rows.append({"rep": rep, "memberships": memberships.get(rep.pk, []), "figures": figures.get(rep.pk)})
    return render(
        request,
        "accounts/rep_list.html",
        {
            "page": page,
            "rows": rows,
            "plan": plan,
            "params": params,
            "territory_options": territory_options,
            "filtered": any(params.values()),
            "query_without_page": _querystring(params),
        },
    )


@login_required
@require_GET
def rep_detail(request, pk: int):
    rep = get_object_or_404(selectors.rep_list(user=request.user), pk=pk)
    plan = selectors.plan_active_on()
    territories = []
    totals = {"accounts": 0, "revenue": 0.0, "potential": 0.0}
    if plan is not None:
        memberships = list(
            TerritoryMembership.objects.filter(territory__plan=plan, rep=rep)
            .select_related("territory")
            .order_by("territory__code")
        )
        figures = comparison.plan_figures(user=request.user, plans=[plan])[plan.pk]
        by_id = {t.id: t for t in figures.territories}
        visible_ids = selectors.visible_territory_ids(user=request.user, plan=plan)
        for m in memberships:
            if (
                visible_ids is not None
                and m.territory_id not in visible_ids
                and rep.user_id != request.user.pk
            ):
                continue
            territory_figures = by_id.get(m.territory_id)
            territories.append({"membership": m, "figures": territory_figures})
            if territory_figures is not None:
                totals["accounts"] += int(territory_figures.metrics["accounts"])
                totals["revenue"] += territory_figures.metrics["revenue"]
                totals["potential"] += territory_figures.metrics["potential"]
    direct_reports = selectors.rep_list(user=request.user).filter(manager=rep).order_by("name")
    points = []
    if rep.home_location is not None:
        points.append({"lon": rep.home_location.x, "lat": rep.home_location.y, "label": f"{rep.name} (home)"})
    outlines = comparison.territory_outlines(
        plan=plan, territory_ids=[t["membership"].territory_id for t in territories]
    )
    return render(
        request,
        "accounts/rep_detail.html",
        {
            "rep": rep,
            "plan": plan,
            "territories": territories,
            "totals": totals,
            "direct_reports": direct_reports,
            "map_config": {"states_url": reverse("map-states"), "points": points, "outlines": outlines},
        },
    )

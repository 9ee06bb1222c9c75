"""Browser pages for quotas: the quota plans list (/quotas/) and one plan's page (/quotas/<id>/) with
the allocation table by hierarchy, the allocation run (planners), adjustments with their approvals,
goals, history and relief. Thin: reads from quotas.selectors, writes through quotas.services; every
form posts, then redirects back with a message (errors name the field)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Rep
from territories import selectors as territory_selectors
from territories.models import Territory
from tessera_common.errors import ApplicationError

from . import selectors, services
from .choices import AllocationMethod, Component, GoalMetric, PeriodKind, QuotaPlanStatus, ReliefStatus
from .models import FiscalPeriod, QuotaAdjustment, QuotaPlan

HISTORY_ROWS = 100
RELIEF_ROWS = 100
ADJUSTMENT_ROWS = 50
TRANSITION_LABELS = {
    "draft": "Back to draft",
    "approved": "Approve",
    "active": "Activate",
    "archived": "Archive",
}
TABLE_ROWS_MAX = 400  # territories and rep rows shown at once before the table goes two levels at a time


def _quota_plan(request, pk: int) -> QuotaPlan:
    quota_plan = selectors.quota_plan_get(user=request.user, pk=pk)
    if quota_plan is None:
        raise Http404("No such quota plan.")
    return quota_plan


def _error(request, exc: ApplicationError) -> None:
    detail = "; ".join(f"{field}: {', '.join(map(str, msgs))}" for field, msgs in exc.errors.items())
    messages.error(request, f"{exc.message}" + (f" ({detail})" if detail else ""))


def _int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() else None


@login_required
@require_GET
def quota_plan_list(request):
    quota_plans = list(selectors.quota_plan_list(user=request.user).order_by("-created")[:100])
    rows = []
    for qp in quota_plans:
        targets = services.company_targets(qp)
        rows.append({"quota_plan": qp, "targets": [targets[c] for c in Component.values]})
    context = {"rows": rows, "components": Component.choices}
    if request.user.can_plan:
        context["territory_plans"] = territory_selectors.plan_list(user=request.user).exclude(
            status="archived"
        )[:100]
        context["fiscal_years"] = FiscalPeriod.objects.filter(kind=PeriodKind.YEAR).order_by("-start")
    return render(request, "quotas/quota_plan_list.html", context)


@login_required
@require_POST
def quota_plan_create(request):
    if not request.user.can_plan:
        raise PermissionDenied("Only planners and admins create quota plans.")
    try:
        territory_plan = (
            territory_selectors.plan_list(user=request.user)
            .filter(pk=_int(request.POST.get("territory_plan")))
            .first()
        )
        fiscal_year = FiscalPeriod.objects.filter(pk=_int(request.POST.get("fiscal_year"))).first()
        if territory_plan is None or fiscal_year is None:
            raise ApplicationError(
                "Choose a territory plan and a fiscal year.",
                {"territory_plan" if territory_plan is None else "fiscal_year": ["required"]},
            )
        quota_plan = services.quota_plan_create(
            name=request.POST.get("name", ""),
            territory_plan=territory_plan,
            fiscal_year=fiscal_year,
            targets={c: request.POST.get(f"target_{c}") or "0" for c in Component.values},
            actor=request.user,
        )
    except ApplicationError as exc:
        _error(request, exc)
        return redirect("quotas:list")
    messages.success(request, f"Quota plan '{quota_plan.name}' created; run the allocation next.")
    return redirect("quotas:detail", pk=quota_plan.pk)


@login_required
@require_POST
def fiscal_year_create(request):
    if not request.user.can_plan:
        raise PermissionDenied("Only planners and admins add fiscal years.")
    year = _int(request.POST.get("year"))
    if year is None or not 2000 <= year <= 2100:
        messages.error(request, "Enter a fiscal year between 2000 and 2100 (year: not a year).")
        return redirect("quotas:list")
    try:
        fy = services.fiscal_year_create(year=year, first_month=_int(request.POST.get("first_month")) or 1)
    except ApplicationError as exc:
        _error(request, exc)
    else:
        messages.success(
            request, f"Fiscal year {fy.name} ({fy.start:%Y-%m-%d} – {fy.end:%Y-%m-%d}) is ready."
        )
    return redirect("quotas:list")


def _allocation_table(
    user, quota_plan: QuotaPlan, component: str, calendar: services.FiscalCalendar, focus: int | None = None
) -> dict:
    """Rows in hierarchy order (each territory, then its reps), columns the year, quarters, months.
    A large hierarchy (or a `focus` territory) shows two levels at a time, with links to go deeper."""
    periods = [calendar.year, *calendar.quarters, *calendar.months]
    quotas = selectors.quota_list(user=user, quota_plan=quota_plan).filter(component=component)
    amounts: dict[tuple, dict[int, Decimal]] = defaultdict(dict)
    for q in quotas.values("territory_id", "rep_id", "period_id", "amount"):
        amounts[(q["territory_id"], q["rep_id"])][q["period_id"]] = q["amount"]
    territories = list(
        territory_selectors.territory_list(user=user, plan=quota_plan.territory_plan).order_by("code")
    )
    visible = {t.pk for t in territories}
    children: dict[int | None, list[Territory]] = defaultdict(list)
    for t in territories:
        children[t.parent_id if t.parent_id in visible else None].append(t)
    rep_names = dict(Rep.objects.filter(pk__in={r for _, r in amounts if r}).values_list("pk", "name"))
    reps_of: dict[int, list[int]] = defaultdict(list)
    for territory_id, rep_id in sorted(amounts, key=lambda k: (k[0] or 0, rep_names.get(k[1], ""))):
        if rep_id is not None:
            reps_of[territory_id].append(rep_id)
    rows = []
    if (None, None) in amounts:
        rows.append(
            {
                "kind": "company",
                "label": "Company",
                "depth": 0,
                "cells": _cells(amounts[(None, None)], periods),
            }
        )

    by_id = {t.pk: t for t in territories}
    focused = by_id.get(focus) if focus else None
    limited = focused is not None or len(territories) + len(amounts) > TABLE_ROWS_MAX

    def walk(node: Territory, depth: int, levels_left: int) -> None:
        kids = children.get(node.pk, [])
        deeper = bool(kids) and (not limited or levels_left > 0)
        rows.append({
            "kind": "territory", "label": f"{node.code} {node.name}", "depth": depth, "territory": node,
            "is_leaf": not kids, "more": bool(kids) and not deeper,
            "cells": _cells(amounts.get((node.pk, None), {}), periods),
        })  # fmt: skip
        for rep_id in reps_of.get(node.pk, []):
            rows.append({
                "kind": "rep", "label": rep_names.get(rep_id, f"rep {rep_id}"), "depth": depth + 1,
                "cells": _cells(amounts[(node.pk, rep_id)], periods),
            })  # fmt: skip
        if deeper:
            for child in kids:
                walk(child, depth + 1, levels_left - 1)

    path = []
    if focused is not None:
        rows = []  # the company row belongs to the top view
        node = focused
        while node.parent_id in by_id:
            node = by_id[node.parent_id]
            path.insert(0, node)
        walk(focused, 0, 2)
    else:
        for root in children.get(None, []):
            walk(root, 1 if rows else 0, 1)
    return {"periods": periods, "rows": rows, "focus": focused, "path": path, "limited": limited}


def _cells(by_period: dict[int, Decimal], periods) -> list[Decimal | None]:
    return [by_period.get(p.pk) for p in periods]


@login_required
@require_GET
def quota_plan_detail(request, pk: int):
    quota_plan = _quota_plan(request, pk)
    user = request.user
    component = request.GET.get("component") if request.GET.get("component") in Component.values else "new"
    calendar = services.FiscalCalendar(quota_plan.fiscal_year)
    table = _allocation_table(user, quota_plan, component, calendar, focus=_int(request.GET.get("focus")))
    plan = quota_plan.territory_plan
    territories = list(territory_selectors.territory_list(user=user, plan=plan).order_by("code"))
    managed_ids = (
        None
        if user.can_plan
        else {
            i
            for t in Territory.objects.filter(plan=plan, manager=user)
            for i in territory_selectors.territory_subtree_ids(territory=t)
        }
    )
    adjustable = [t for t in territories if managed_ids is None or t.pk in managed_ids]
    leaves_with_reps = [
        {
            "id": t.pk,
            "label": f"{t.code} {t.name}",
            "reps": [{"id": m.rep_id, "name": m.rep.name} for m in t.memberships.all()],
        }
        for t in Territory.objects.filter(pk__in=[t.pk for t in adjustable])
        .prefetch_related("memberships__rep")
        .order_by("code")
        if t.memberships.all()
    ]
    awaiting = list(selectors.adjustments_awaiting(user=user, quota_plan=quota_plan).order_by("created"))
    adjustments = list(
        selectors.adjustment_list(user=user, quota_plan=quota_plan).order_by("-created")[:ADJUSTMENT_ROWS]
    )
    reliefs = selectors.relief_list(user=user, quota_plan=quota_plan)
    moved: dict[str, Decimal] = {c: Decimal("0.00") for c in Component.values}
    for amounts in reliefs.filter(status=ReliefStatus.APPLIED).values_list("amounts", flat=True):
        for c, v in amounts.items():
            moved[c] += Decimal(v)
    targets = services.company_targets(quota_plan)
    context = {
        "quota_plan": quota_plan,
        "targets": targets,
        "component": component,
        "components": Component.choices,
        "methods": AllocationMethod.choices,
        "table": table,
        "periods_for_adjustment": [calendar.year, *calendar.quarters, *calendar.months],
        "can_allocate": user.can_plan
        and quota_plan.status in (QuotaPlanStatus.DRAFT, QuotaPlanStatus.APPROVED),
        "can_adjust": bool(adjustable)
        and quota_plan.allocated_at is not None
        and quota_plan.status != "archived",
        "adjustable": adjustable,
        # Only territories with a sibling to trade with: quota moves between children of one node.
        "territory_options": [
            {"id": t.pk, "label": f"{t.code} {t.name}", "parent": t.parent_id}
            for t in adjustable
            if sum(1 for o in adjustable if o.parent_id == t.parent_id) > 1
        ],
        "leaves_with_reps": leaves_with_reps,
        "awaiting": awaiting,
        "adjustments": adjustments,
        "history": selectors.quota_change_list(user=user, quota_plan=quota_plan).order_by("-at", "-id")[
            :HISTORY_ROWS
        ],
        "reliefs": reliefs.select_related("from_territory", "to_territory").order_by(
            "-effective_from", "-id"
        )[:RELIEF_ROWS],
        "relief_counts": {
            "applied": reliefs.filter(status=ReliefStatus.APPLIED).count(),
            "skipped": reliefs.filter(status=ReliefStatus.SKIPPED).count(),
        },
        "moved": moved,
        "goals": selectors.activity_goal_list(user=user, quota_plan=quota_plan).order_by(
            "territory__code", "metric"
        ),
        "goal_metrics": GoalMetric.choices,
        "transitions": [
            (status, TRANSITION_LABELS[status])
            for status in sorted(services.QUOTA_PLAN_TRANSITIONS[QuotaPlanStatus(quota_plan.status)])
        ]
        if user.can_plan
        else [],
        "target_rows": [
            (label, services.company_targets(quota_plan)[value]) for value, label in Component.choices
        ],
        "adjust_config": {
            "territories": [{"id": t.pk, "parent": t.parent_id} for t in adjustable],
            "reps": {str(x["id"]): x["reps"] for x in leaves_with_reps},
        },
    }
    return render(request, "quotas/quota_plan_detail.html", context)


def _back(quota_plan: QuotaPlan, anchor: str, component: str | None = None) -> str:
    url = reverse("quotas:detail", args=[quota_plan.pk])
    if component in Component.values:
        url += f"?component={component}"
    return f"{url}#{anchor}"


@login_required
@require_POST
def quota_plan_allocate(request, pk: int):
    quota_plan = _quota_plan(request, pk)
    if not request.user.can_plan:
        raise PermissionDenied("Only planners and admins run the allocation.")
    post = request.POST
    parameters = {
        "method": post.get("method", "potential"),
        "blend_weight": post.get("blend_weight") or 0.5,
        "unit": post.get("unit") or "1000",
        "min_ratio": post.get("min_ratio") or None,
        "max_ratio": post.get("max_ratio") or None,
    }
    targets = {c: post.get(f"target_{c}") or "0" for c in Component.values}
    try:
        if services.allocation_runs_in_background(quota_plan):
            services.quota_plan_allocate_later(
                quota_plan=quota_plan, parameters=parameters, targets=targets, actor=request.user
            )
            messages.success(
                request, "The allocation runs in the background; this page updates when it is done."
            )
        else:
            result = services.quota_plan_allocate(
                quota_plan=quota_plan, targets=targets, actor=request.user, **parameters
            )
            messages.success(
                request,
                f"Allocated by {result['parameters']['method']} to {result['territories']} territories and "
                f"{result['reps']} reps in {result['seconds']} s.",
            )
    except ApplicationError as exc:
        _error(request, exc)
    return redirect(_back(quota_plan, "allocation"))


@login_required
@require_POST
def quota_plan_transition(request, pk: int):
    quota_plan = _quota_plan(request, pk)
    if not request.user.can_plan:
        raise PermissionDenied("Only planners and admins change a quota plan's status.")
    try:
        services.quota_plan_transition(
            quota_plan=quota_plan, status=request.POST.get("status", ""), actor=request.user
        )
    except ApplicationError as exc:
        _error(request, exc)
    else:
        messages.success(request, f"The quota plan is now {request.POST.get('status')}.")
    return redirect(_back(quota_plan, "top"))


@login_required
@require_POST
def adjustment_create(request, pk: int):
    quota_plan = _quota_plan(request, pk)
    post = request.POST
    territories = Territory.objects.filter(plan=quota_plan.territory_plan)
    try:
        period = FiscalPeriod.objects.filter(pk=_int(post.get("period"))).first()
        if period is None:
            raise ApplicationError("Choose a period.", {"period": ["required"]})
        by_reps = post.get("between") == "reps"
        adjustment = services.quota_adjustment_propose(
            quota_plan=quota_plan,
            actor=request.user,
            component=post.get("component", ""),
            period=period,
            amount=post.get("amount", ""),
            reason=post.get("reason", ""),
            from_territory=None
            if by_reps
            else territories.filter(pk=_int(post.get("from_territory"))).first(),
            to_territory=None if by_reps else territories.filter(pk=_int(post.get("to_territory"))).first(),
            territory=territories.filter(pk=_int(post.get("territory"))).first() if by_reps else None,
            from_rep=Rep.objects.filter(pk=_int(post.get("from_rep"))).first() if by_reps else None,
            to_rep=Rep.objects.filter(pk=_int(post.get("to_rep"))).first() if by_reps else None,
        )
    except ApplicationError as exc:
        _error(request, exc)
        return redirect(_back(quota_plan, "adjust", post.get("component")))
    who = adjustment.approver.username if adjustment.approver else "a planner"
    messages.success(request, f"Adjustment proposed; it waits for {who} to approve it.")
    return redirect(_back(quota_plan, "adjustments", adjustment.component))


@login_required
@require_POST
def adjustment_decide(request, pk: int, adjustment_id: int):
    quota_plan = _quota_plan(request, pk)
    adjustment = get_object_or_404(QuotaAdjustment, pk=adjustment_id, quota_plan=quota_plan)
    decision = request.POST.get("decision")
    note = request.POST.get("note", "")
    try:
        if decision == "approve":
            services.quota_adjustment_approve(adjustment=adjustment, actor=request.user, note=note)
            messages.success(request, f"Adjustment {adjustment.pk} approved and applied.")
        elif decision == "reject":
            services.quota_adjustment_reject(adjustment=adjustment, actor=request.user, note=note)
            messages.success(request, f"Adjustment {adjustment.pk} rejected.")
        else:
            raise ApplicationError("Approve or reject.", {"decision": ["approve or reject"]})
    except ApplicationError as exc:
        _error(request, exc)
    return redirect(_back(quota_plan, "approvals", adjustment.component))


@login_required
@require_POST
def goal_set(request, pk: int):
    quota_plan = _quota_plan(request, pk)
    territory = Territory.objects.filter(
        plan=quota_plan.territory_plan, pk=_int(request.POST.get("territory"))
    ).first()
    try:
        if territory is None:
            raise ApplicationError("Choose a territory.", {"territory": ["required"]})
        services.activity_goal_set(
            quota_plan=quota_plan,
            territory=territory,
            metric=request.POST.get("metric", ""),
            target=request.POST.get("target", ""),
            actor=request.user,
        )
    except ApplicationError as exc:
        _error(request, exc)
    else:
        messages.success(request, f"Goal set for {territory.code}.")
    return redirect(_back(quota_plan, "goals"))

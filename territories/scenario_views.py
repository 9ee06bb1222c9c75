"""Browser pages for plans (scenarios): the list with headline figures, a plan's detail, comparing
two scenarios, and the review and publishing workflow. Thin: figures come from
territories.comparison, writes from territories.services and territories.review."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from tessera_common.errors import ApplicationError, StaleVersionError

from . import comparison, review, selectors, services
from .choices import PlanStatus
from .models import Plan

# The moved accounts listed under the compare map; the map itself draws up to MOVED_POINTS_LIMIT.
MOVED_TABLE_ROWS = 200
# The plan list shows the newest plans; older ones stay reachable from the compare page's pickers.
PLAN_LIST_LIMIT = 50
PLAN_PICKER_LIMIT = 500


def _visible_plan(request, pk: int) -> Plan:
    """The plan if the user may see it; 404 otherwise, so plans outside one's scope stay unknown."""
    return get_object_or_404(selectors.plan_list(user=request.user), pk=pk)


def _require_planner(request, what: str) -> None:
    if not request.user.can_plan:
        raise PermissionDenied(f"Only planners and admins can {what}.")


def _version(request) -> int | None:
    raw = request.POST.get("version", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApplicationError(
            "The plan version must be a whole number.", {"version": ["not a number"]}
        ) from None


@login_required
@require_GET
def home(request):
    visible = selectors.plan_list(user=request.user)
    plans = list(visible[:PLAN_LIST_LIMIT])
    total = len(plans) if len(plans) < PLAN_LIST_LIMIT else visible.count()
    figures = comparison.plan_figures(user=request.user, plans=plans)
    # Planners approve plans: tell them where reviewers have left comments (one query).
    comments = dict(review.plan_comment_counts(plans=plans)) if request.user.can_plan and plans else {}
    rows = [
        {"plan": plan, "figures": figures[plan.pk], "comments": comments.get(plan.pk, 0)} for plan in plans
    ]
    default_b = plans[0] if plans else None
    default_a = next(
        (p for p in plans if p.status == PlanStatus.ACTIVE), plans[1] if len(plans) > 1 else None
    )
    if default_a is not None and default_b is not None and default_a.pk == default_b.pk:
        default_b = next((p for p in plans if p.pk != default_a.pk), None)
    return render(
        request,
        "territories/home.html",
        {
            "rows": rows,
            "plans": plans,
            "total": total,
            "compare_a": default_a,
            "compare_b": default_b,
            "archivable": {PlanStatus.DRAFT, PlanStatus.IN_REVIEW, PlanStatus.APPROVED, PlanStatus.ACTIVE},
        },
    )


@login_required
@require_POST
def plan_new(request):
    _require_planner(request, "create plans")
    try:
        plan = services.plan_create(
            name=request.POST.get("name", ""),
            description=request.POST.get("description", ""),
            actor=request.user,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("home")
    messages.success(request, f"Plan '{plan.name}' created as a draft.")
    return redirect("plan-detail", pk=plan.pk)


@login_required
@require_POST
def plan_clone(request, pk: int):
    _require_planner(request, "clone plans")
    plan = _visible_plan(request, pk)
    name = request.POST.get("name", "").strip() or f"Copy of {plan.name}"
    try:
        clone = services.plan_clone(plan=plan, name=name, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("home")
    messages.success(request, f"Scenario '{clone.name}' created from '{plan.name}'.")
    return redirect("home")


@login_required
@require_POST
def plan_archive(request, pk: int):
    _require_planner(request, "archive plans")
    plan = _visible_plan(request, pk)
    try:
        services.plan_transition(
            plan=plan, status=PlanStatus.ARCHIVED, actor=request.user, expected_version=_version(request)
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("home")
    messages.success(request, f"Plan '{plan.name}' archived.")
    return redirect("home")


@login_required
@require_GET
def plan_detail(request, pk: int):
    plan = _visible_plan(request, pk)
    figures = comparison.plan_figures(user=request.user, plans=[plan])[plan.pk]
    return render(
        request,
        "territories/plan_detail.html",
        {
            "plan": plan,
            "figures": figures,
            "metrics": comparison.METRICS,
            "metric_labels": comparison.METRIC_LABELS,
            "scenarios": selectors.plan_list(user=request.user).filter(based_on=plan),
            "map_config": {
                "states_url": reverse("map-states"),
                "outlines_url": reverse("plan-outlines", args=[plan.pk]),
            },
        },
    )


@login_required
@require_GET
def plan_outlines(request, pk: int):
    """GeoJSON of the plan's leaf territories the user may see (the pages' map layer)."""
    plan = _visible_plan(request, pk)
    response = HttpResponse(
        comparison.plan_outlines_geojson(user=request.user, plan=plan), content_type="application/geo+json"
    )
    response["Cache-Control"] = "private, no-cache"
    return response


@login_required
@require_GET
def map_states(request):
    """State outlines for the pages' offline base layer."""
    response = HttpResponse(comparison.state_outlines_geojson(), content_type="application/geo+json")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _plan_param(request, name: str, plans) -> tuple[Plan | None, str | None]:
    raw = request.GET.get(name, "").strip()
    if not raw:
        return None, None
    try:
        pk = int(raw)
    except ValueError:
        return None, f"'{raw}' is not a plan id."
    plan = plans.filter(pk=pk).first()
    if plan is None:
        raise Http404(f"No plan {pk} that you can see.")
    return plan, None


@login_required
@require_GET
def plan_compare(request):
    plans = selectors.plan_list(user=request.user)
    picks = request.GET.getlist("pick")
    if picks and not request.GET.get("a") and not request.GET.get("b"):
        # Two rows ticked on the plan list: the older plan is the baseline A, the newer one B.
        picked = list(plans.filter(pk__in=[p for p in picks if p.isdigit()]).order_by("created", "id"))
        if len(picks) == 2 and len(picked) == 2:
            return redirect(f"{reverse('plan-compare')}?a={picked[0].pk}&b={picked[1].pk}")
        return render(
            request,
            "territories/compare.html",
            {
                "plans": plans[:PLAN_PICKER_LIMIT],
                "errors": [f"Tick exactly two plans to compare (you ticked {len(picks)})."],
            },
            status=400,
        )
    errors = []
    plan_a, error_a = _plan_param(request, "a", plans)
    plan_b, error_b = _plan_param(request, "b", plans)
    errors += [e for e in (error_a, error_b) if e]
    if plan_a is not None and plan_b is not None and plan_a.pk == plan_b.pk:
        errors.append("Pick two different plans to compare.")
    context = {"plans": plans[:PLAN_PICKER_LIMIT], "plan_a": plan_a, "plan_b": plan_b, "errors": errors}
    if errors or plan_a is None or plan_b is None:
        if (request.GET.get("a") or request.GET.get("b")) and not errors:
            errors.append("Pick both plans, A and B.")
        return render(request, "territories/compare.html", context, status=400 if errors else 200)
    # delta = B − A: what changes if B replaces A.
    diff = comparison.plan_diff(
        user=request.user, plan=plan_b, other=plan_a, limit=comparison.MOVED_POINTS_LIMIT
    )
    moved = diff["moved_accounts"]
    context.update(
        {
            "diff": diff,
            "metrics": comparison.METRICS,
            "metric_labels": comparison.METRIC_LABELS,
            "moved_rows": moved[:MOVED_TABLE_ROWS],
            "map_config": {
                "states_url": reverse("map-states"),
                "a": {
                    "id": plan_a.pk,
                    "name": plan_a.name,
                    "outlines_url": reverse("plan-outlines", args=[plan_a.pk]),
                },
                "b": {
                    "id": plan_b.pk,
                    "name": plan_b.name,
                    "outlines_url": reverse("plan-outlines", args=[plan_b.pk]),
                },
                # Compact rows: [lon, lat, account id, name, from code, to code].
                "moved": [
                    [
                        row["lon"],
                        row["lat"],
                        row["account_id"],
                        row["name"],
                        row["from"]["code"] if row["from"] else None,
                        row["to"]["code"] if row["to"] else None,
                    ]
                    for row in moved
                    if row["lon"] is not None
                ],
                "moved_total": diff["moved_total"],
            },
        }
    )
    return render(request, "territories/compare.html", context)


def _review_context(request, plan: Plan) -> dict:
    comments = list(review.plan_comment_list(user=request.user, plan=plan))
    return {
        "plan": plan,
        "timeline": review.plan_status_timeline(plan=plan),
        "comments": comments,
        "comment_refusal": review.plan_comment_refusal(user=request.user, plan=plan),
        "territories": selectors.territory_list(user=request.user, plan=plan).order_by("code"),
        "next_statuses": [
            (s, PlanStatus(s).label) for s in review.plan_next_statuses(user=request.user, plan=plan)
        ],
        "can_publish": request.user.can_plan and plan.status == PlanStatus.APPROVED,
        "today": timezone.localdate(),
        "comments_api": reverse("review-api:plan-comments", args=[plan.pk]),
    }


@login_required
def plan_review(request, pk: int):
    plan = _visible_plan(request, pk)
    if request.method == "GET":
        return render(request, "territories/review.html", _review_context(request, plan))
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    action = request.POST.get("action", "")
    form_errors: dict = {}
    try:
        if action == "comment":
            territory = None
            raw_territory = request.POST.get("territory", "").strip()
            if raw_territory:
                visible = selectors.territory_list(user=request.user, plan=plan)
                territory = visible.filter(pk=raw_territory).first() if raw_territory.isdigit() else None
                if territory is None:
                    raise ApplicationError(
                        "That territory is not one of this plan's territories you can see.",
                        {"territory": ["unknown territory"]},
                    )
            review.plan_comment_create(
                plan=plan, author=request.user, body=request.POST.get("body", ""), territory=territory
            )
            messages.success(request, "Comment added.")
        elif action == "transition":
            _require_planner(request, "change a plan's status")
            status = request.POST.get("status", "")
            plan = services.plan_transition(
                plan=plan, status=status, actor=request.user, expected_version=_version(request)
            )
            messages.success(request, f"'{plan.name}' is now {plan.get_status_display().lower()}.")
        elif action == "publish":
            _require_planner(request, "publish plans")
            raw = request.POST.get("effective_from", "").strip()
            try:
                effective_from = dt.date.fromisoformat(raw) if raw else None
            except ValueError:
                raise ApplicationError(
                    f"'{raw}' is not a date; use YYYY-MM-DD.",
                    {"effective_from": ["enter a date as YYYY-MM-DD"]},
                ) from None
            plan = services.plan_publish(
                plan=plan,
                effective_from=effective_from,
                actor=request.user,
                expected_version=_version(request),
            )
            messages.success(
                request, f"'{plan.name}' is published, effective from {plan.effective_from:%Y-%m-%d}."
            )
        else:
            raise ApplicationError(
                f"Unknown action {action!r}.", {"action": ["comment, transition or publish"]}
            )
    except ApplicationError as exc:
        plan.refresh_from_db()
        form_errors = exc.errors
        context = _review_context(request, plan)
        context.update(
            {
                "error": exc.message,
                "conflict": isinstance(exc, StaleVersionError),
                "form_errors": form_errors,
                "posted": request.POST,
            }
        )
        return render(request, "territories/review.html", context, status=exc.status)
    return redirect("plan-review", pk=plan.pk)

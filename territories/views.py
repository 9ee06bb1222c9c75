"""Browser pages of the planner and the vector tiles it draws. Thin: data comes from selectors,
tiles from territories.tiles."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.db.models import Count
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts.models import Account

from . import tiles
from .api.planner_views import plan_is_editable
from .selectors import plan_list, visible_territory_ids

MVT = "application/vnd.mapbox-vector-tile"
# Colour-blind-safe qualitative palette (Okabe–Ito plus two); industries beyond it are grey.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#7F3C8D",
    "#11A579",
    "#3969AC",
    "#F2B701",
]
SEGMENT_COLOURS = {"smb": "#56B4E9", "mid_market": "#E69F00", "enterprise": "#CC79A7"}


def _planner_tools_present() -> bool:
    """planner_tools (another module) adds its dialogs and script when they exist."""
    if not finders.find("js/planner_tools.js"):
        return False
    try:
        get_template("territories/planner_tools/dialogs.html")
    except TemplateDoesNotExist:
        return False
    return True


@login_required
def planner(request, plan_id: int):
    """The full-window map planner for one plan. Planners edit; everyone else sees it read-only."""
    plan = get_object_or_404(plan_list(user=request.user), pk=plan_id)
    can_edit = bool(request.user.can_plan) and plan_is_editable(plan)
    # Aggregate the accounts for the overview zooms now, while the page loads, so the first
    # low-zoom tiles are answered from the grid (see tiles.py).
    tiles.account_grid(plan=plan, territory_ids=visible_territory_ids(user=request.user, plan=plan))
    root = request.build_absolute_uri("/")
    config = {
        "plan": {"id": plan.pk, "name": plan.name, "status": plan.status, "version": plan.version},
        "user": {"id": request.user.pk, "username": request.user.get_username(), "can_plan": can_edit},
        "api": "/api/v1/",
        "tiles": {
            # Absolute: MapLibre fetches tiles from a worker, where relative URLs do not resolve.
            # Concatenated, since build_absolute_uri would escape the {z}/{x}/{y} placeholders.
            "base": root + "tiles/base/{z}/{x}/{y}.pbf",
            "accounts": root + f"tiles/plans/{plan.pk}/accounts/{{z}}/{{x}}/{{y}}.pbf",
            "raw_min_zoom": tiles.RAW_MIN_ZOOM,
            "county_min_zoom": tiles.COUNTY_MIN_ZOOM,
        },
        "basemap": {
            "url": settings.TESSERA_BASEMAP_URL,
            "attribution": settings.TESSERA_BASEMAP_ATTRIBUTION,
        },
        "plans_url": reverse("home"),
        "colours": {"segment": SEGMENT_COLOURS, "industry": _industry_colours()},
    }
    return render(
        request,
        "territories/planner.html",
        {
            "plan": plan,
            "config": config,
            "can_edit": can_edit,
            "read_only_reason": _read_only_reason(request, plan),
            "planner_tools": _planner_tools_present(),
        },
    )


_industries: dict[tuple, dict[str, str]] = {}


def _industry_colours() -> dict[str, str]:
    """The most common industries get a palette colour each (largest first); counted once per
    accounts stamp (the same check the account grid uses)."""
    stamp = tiles.GRIDS.accounts_stamp()
    if stamp not in _industries:
        _industries.clear()
        _industries[stamp] = _count_industries()
    return _industries[stamp]


def _count_industries() -> dict[str, str]:
    top = (
        Account.objects.exclude(industry="")
        .values("industry")
        .annotate(n=Count("id"))
        .order_by("-n", "industry")[: len(PALETTE)]
    )
    return {row["industry"]: PALETTE[i] for i, row in enumerate(top)}


def _read_only_reason(request, plan) -> str:
    if not request.user.can_plan:
        return "Read-only: only planners edit plans."
    if not plan_is_editable(plan):
        return f"Read-only: this plan is {plan.get_status_display().lower()}; clone it to edit."
    return ""


def _tile_response(data: bytes, started: float, *, max_age: int) -> HttpResponse:
    response = HttpResponse(data, content_type=MVT)
    # Server-Timing lets the benchmark (and the browser's devtools) read the server's own time.
    response["Server-Timing"] = f"tile;dur={(time.perf_counter() - started) * 1000:.2f}"
    response["Cache-Control"] = f"private, max-age={max_age}"
    return response


def _tile_refused(request) -> JsonResponse | None:
    if not request.user.is_authenticated:
        return JsonResponse({"message": "Sign in to load map tiles.", "errors": {}}, status=401)
    return None


@require_GET
def base_tile(request, z: int, x: int, y: int):
    """States and geography units; the same for every plan (territory colours come from the API)."""
    started = time.perf_counter()
    refused = _tile_refused(request)
    if refused:
        return refused
    try:
        data = tiles.base_tile(z, x, y)
    except tiles.TileError as exc:
        return JsonResponse({"message": str(exc), "errors": {"tile": [f"{z}/{x}/{y}"]}}, status=404)
    # Geography changes only when load_geography runs again.
    return _tile_response(data, started, max_age=3600)


@require_GET
def accounts_tile(request, plan_id: int, z: int, x: int, y: int):
    """The accounts the user may see in a plan: aggregated cells at low zoom, accounts from z11.
    Clients add ?v=<plan version> so an edit gives new URLs and the browser cache stays right."""
    started = time.perf_counter()
    refused = _tile_refused(request)
    if refused:
        return refused
    plan = get_object_or_404(plan_list(user=request.user), pk=plan_id)
    try:
        data = tiles.accounts_tile(
            plan=plan, territory_ids=visible_territory_ids(user=request.user, plan=plan), z=z, x=x, y=y
        )
    except tiles.TileError as exc:
        return JsonResponse({"message": str(exc), "errors": {"tile": [f"{z}/{x}/{y}"]}}, status=404)
    return _tile_response(data, started, max_age=300 if request.GET.get("v") else 0)

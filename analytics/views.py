"""The dashboard and warnings pages, and their CSV/XLSX exports. Thin: selectors do the work and
the scoping."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.text import slugify

from tessera_common.errors import ApplicationError

from . import selectors
from .api.views import _int, window_from
from .choices import Severity, WarningKind
from .models import WarningCheck

EXPORT_FORMATS = ("csv", "xlsx")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _query(request, **changes) -> str:
    params = {k: v for k, v in request.GET.items() if v}
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    return urlencode(params)


def _error_page(request, exc: ApplicationError, title: str):
    return render(request, "analytics/error.html", {"title": title, "error": exc}, status=exc.status)


@login_required
def dashboard(request):
    """Attainment and pacing of the user's part of the plan, with fairness and balance figures."""
    params = request.GET
    try:
        window = window_from(params)
        data = selectors.dashboard_report(
            user=request.user,
            window=window,
            territory_id=_int(params, "territory"),
            level=params.get("level") or None,
            component=params.get("component") or None,
        )
    except ApplicationError as exc:
        return _error_page(request, exc, "Dashboard")
    attainment = data["attainment"]
    for row in attainment["rows"]:
        # Bars run to 150% of quota, so over-achievers stay distinguishable.
        row["bar"] = round(min(row["attainment"] or 0.0, 1.5) / 1.5 * 100, 1)
        if row["kind"] == "territory":
            row["drill"] = "?" + _query(request, territory=row["id"], level=None)
        else:
            row["drill"] = "accounts/?" + _query(
                request, territory=row["territory_id"], rep=row["id"], level=None
            )
    parent = attainment["parent"]
    leaf_parent = (
        parent is not None and attainment["level"] == selectors.LEVEL_REP and not params.get("level")
    )
    context = {
        "data": data,
        "attainment": attainment,
        "fairness": data["fairness"],
        "window": window,
        "periods": selectors.period_choices(),
        "components": [("", "All components"), *selectors.Component.choices],
        "params": params,
        "export_csv": "export/?" + _query(request, format="csv"),
        "export_xlsx": "export/?" + _query(request, format="xlsx"),
        "top_url": "?" + _query(request, territory=None, level=None),
        "open_warnings": selectors.warning_list(user=request.user).count(),
        "crumb_query": _query(request, territory=None, level=None),
        "accounts_url": ("accounts/?" + _query(request, territory=parent["id"], level=None))
        if leaf_parent
        else None,
        "chart_data": {
            "rows": [
                {
                    "label": r["name"] if r["kind"] == "rep" else r["code"],
                    "booked": r["booked"],
                    "quota": r["quota"],
                }
                for r in attainment["rows"]
            ],
            "trend": attainment["trend"],
            "histogram": data["fairness"]["attainment"]["histogram"] if data["fairness"] else None,
        },
    }
    return render(request, "analytics/dashboard.html", context)


@login_required
def dashboard_accounts(request):
    """The accounts behind a leaf territory's or a rep's bookings: the last step of the drill-down."""
    params = request.GET
    try:
        territory = _int(params, "territory")
        if territory is None:
            raise ApplicationError("Choose a leaf territory.", {"territory": ["This field is required."]})
        window = window_from(params)
        data = selectors.attainment_accounts(
            user=request.user, window=window, territory_id=territory, rep_id=_int(params, "rep")
        )
    except ApplicationError as exc:
        return _error_page(request, exc, "Accounts")
    context = {
        "data": data,
        "window": window,
        "crumb_query": _query(request, territory=None, rep=None),
        "back_url": "../?" + _query(request, rep=None),
        "export_csv": "export/?" + _query(request, format="csv"),
        "export_xlsx": "export/?" + _query(request, format="xlsx"),
    }
    return render(request, "analytics/accounts.html", context)


ROW_COLUMNS = [
    ("Level", "level_name"),
    ("Code", "code"),
    ("Name", "name"),
    ("Path", "path"),
    ("Role", "role"),
    ("Booked", "booked"),
    ("Quota", "quota"),
    ("Attainment", "attainment"),
    ("Expected to date", "expected"),
    ("Pacing", "pacing"),
    ("Gap to pace", "gap_to_pace"),
    ("Pacing basis", "pacing_basis"),
]
ACCOUNT_COLUMNS = [
    ("External id", "external_id"),
    ("Account", "name"),
    ("City", "city"),
    ("State", "state"),
    ("Segment", "segment"),
    ("Booked", "booked"),
    ("Bookings", "bookings"),
    ("Last booked on", "last_booked_on"),
]


def _cell(row: dict, key: str):
    value = row.get(key)
    if key == "path" and isinstance(value, list):
        return " > ".join(value)
    return "" if value is None else value


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> list[list]:
    return [[label for label, _ in columns], *([_cell(r, key) for _, key in columns] for r in rows)]


def _respond(fmt: str, name: str, sheets: dict[str, list[list]]) -> HttpResponse:
    filename = slugify(name) or "export"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerows(next(iter(sheets.values())))
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return response
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, table in sheets.items():
        sheet = book.create_sheet(title[:31])
        for line in table:
            sheet.append(line)
        sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    response = HttpResponse(buffer.getvalue(), content_type=XLSX_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}.xlsx"'
    return response


def _format(params) -> str:
    fmt = (params.get("format") or "csv").lower()
    if fmt not in EXPORT_FORMATS:
        raise ApplicationError(f"Unknown export format {fmt!r}.", {"format": ["use csv or xlsx"]})
    return fmt


@login_required
def dashboard_export(request):
    """The dashboard's rows (and a total) as CSV, or as XLSX with the monthly trend on a second sheet."""
    params = request.GET
    try:
        fmt = _format(params)
        window = window_from(params)
        report = selectors.attainment_report(
            user=request.user,
            window=window,
            territory_id=_int(params, "territory"),
            level=params.get("level") or None,
            component=params.get("component") or None,
        )
    except ApplicationError as exc:
        return _error_page(request, exc, "Export")
    rows = list(report["rows"])
    if report["totals"]:
        scope_name = report["parent"]["name"] if report["parent"] else "All you can see"
        rows.append({**report["totals"], "level_name": "total", "name": scope_name})
    sheets = {"Attainment": _table(rows, ROW_COLUMNS)}
    trend = report["trend"]
    if trend:
        sheets["Trend"] = [
            ["Month", "Booked", "Quota", "Cumulative booked", "Cumulative quota"],
            *(
                [
                    month,
                    _none(trend["booked"][i]),
                    _none(trend["quota"][i] if trend["quota"] else None),
                    _none(trend["cumulative_booked"][i]),
                    _none(trend["cumulative_quota"][i] if trend["cumulative_quota"] else None),
                ]
                for i, month in enumerate(trend["months"])
            ),
        ]
    name = f"attainment {window.label} {report['parent']['code'] if report['parent'] else ''}"
    return _respond(fmt, name, sheets)


def _none(value):
    return "" if value is None else value


@login_required
def dashboard_accounts_export(request):
    params = request.GET
    try:
        fmt = _format(params)
        territory = _int(params, "territory")
        if territory is None:
            raise ApplicationError("Choose a leaf territory.", {"territory": ["This field is required."]})
        window = window_from(params)
        data = selectors.attainment_accounts(
            user=request.user,
            window=window,
            territory_id=territory,
            rep_id=_int(params, "rep"),
            limit=100_000,
        )
    except ApplicationError as exc:
        return _error_page(request, exc, "Export")
    name = f"accounts {window.label} {data['territory']['code']} {data['rep']['name'] if data['rep'] else ''}"
    return _respond(fmt, name, {"Accounts": _table(data["accounts"], ACCOUNT_COLUMNS)})


@login_required
def warnings_page(request):
    """Open warning signs the user may see, most severe first; planners can run the checks now."""
    warnings = list(selectors.warning_list(user=request.user).order_by("severity", "-last_seen", "id")[:500])
    rank = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    warnings.sort(key=lambda w: (rank.get(w.severity, 3), w.kind, w.title))
    last = WarningCheck.objects.order_by("-created").first()
    running = WarningCheck.objects.filter(status__in=["queued", "running"]).order_by("-created").first()
    counts = {kind.label: 0 for kind in WarningKind}
    for w in warnings:
        counts[w.get_kind_display()] += 1
    return render(
        request,
        "analytics/warnings.html",
        {
            "warnings": warnings,
            "counts": counts,
            "last_check": last,
            "running_check": running if request.user.can_plan else None,
            "can_check": request.user.can_plan,
        },
    )

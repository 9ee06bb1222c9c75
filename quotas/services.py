"""Writes for fiscal periods, quota plans, quotas, adjustments, relief, activity goals and bookings.

Every public service is keyword-only and atomic and raises ApplicationError for what it refuses.

How totals stay consistent:
- Every amount is stored per month; a quarter is the sum of its months and the year the sum of its
  quarters, for the company, every territory and every rep. A parent territory is the sum of its
  children, and a territory with reps is the sum of its reps.
- Allocation (planner) rewrites every territory and rep row from the company targets.
- An adjustment moves quota between two siblings (two children of one node, or two reps of one
  territory): the node above and everything above it keep their totals. Inside the two siblings the
  change is spread over their children and reps in proportion to what each holds (equally when they
  hold nothing), to the cent.
- Relief moves quota from the territory an account left to the one it joined, for the months left in
  the fiscal year: the territories on the path up to their common ancestor change, the company total
  never does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import F, Sum
from django.db.models.functions import ExtractMonth, ExtractYear
from django.utils import timezone

from accounts.models import Account, Rep
from accounts.services import (
    CREATED,
    ERROR,
    NON_FIELD,
    UNCHANGED,
    UPDATED,
    BulkResult,
    Progress,
    RowResult,
    _as_text,
    _choice,
    _decimal,
    _Invalid,
    _is_empty,
)
from territories.choices import AssignmentRole, MemberRole, PlanStatus
from territories.models import AccountAssignment, Change, Plan, Territory, TerritoryMembership
from tessera_common.db import analyze_after_large_write
from tessera_common.errors import ApplicationError
from tessera_common.events import bookings_written_emit

from . import allocation
from .choices import (
    AdjustmentStatus,
    AllocationMethod,
    Component,
    GoalMetric,
    PeriodKind,
    QuotaChangeKind,
    QuotaPlanStatus,
    ReliefStatus,
)
from .models import (
    ActivityGoal,
    Booking,
    FiscalPeriod,
    Quota,
    QuotaAdjustment,
    QuotaChange,
    QuotaPlan,
    QuotaRelief,
)

logger = logging.getLogger(__name__)

COMPONENTS = list(Component.values)
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("99999999999999.99")  # what a DecimalField(16, 2) holds
BOOKINGS_MAX_ROWS = 10_000

QUOTA_PLAN_TRANSITIONS = {
    QuotaPlanStatus.DRAFT: {QuotaPlanStatus.APPROVED, QuotaPlanStatus.ARCHIVED},
    QuotaPlanStatus.APPROVED: {QuotaPlanStatus.DRAFT, QuotaPlanStatus.ACTIVE, QuotaPlanStatus.ARCHIVED},
    QuotaPlanStatus.ACTIVE: {QuotaPlanStatus.ARCHIVED},
    QuotaPlanStatus.ARCHIVED: set(),
}


def to_cents(amount: Decimal | int | float) -> int:
    return int((Decimal(amount) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_cents(cents: int) -> Decimal:
    return (Decimal(int(cents)) / 100).quantize(CENT)


def _money(value: Any, field: str, *, positive: bool = False) -> Decimal:
    try:
        number = _decimal(16, 2)(value)
    except _Invalid as exc:
        raise ApplicationError(
            f"{field.replace('_', ' ').capitalize()}: {exc}", {field: [str(exc)]}
        ) from None
    if positive and number <= 0:
        raise ApplicationError(
            f"{field.replace('_', ' ').capitalize()} must be more than 0.", {field: ["must be more than 0"]}
        )
    return number


# --- fiscal periods -------------------------------------------------------------------------------


@transaction.atomic
def fiscal_year_create(*, year: int, first_month: int = 1) -> FiscalPeriod:
    """A fiscal year with its 4 quarters and 12 months; FY<year> ends in `year` when it does not start
    in January (FY2027 starting in February 2026 ends in January 2027). Existing periods are kept."""
    if not 1 <= int(first_month) <= 12:
        raise ApplicationError("The first month must be 1–12.", {"first_month": ["1–12"]})
    start = dt.date(year if first_month == 1 else year - 1, first_month, 1)
    months = [_add_months(start, i) for i in range(12)]
    fy, _ = FiscalPeriod.objects.get_or_create(
        kind=PeriodKind.YEAR,
        start=start,
        defaults={"name": f"FY{year}", "end": _add_months(start, 12) - dt.timedelta(days=1)},
    )
    for q in range(4):
        q_start = months[3 * q]
        quarter, _ = FiscalPeriod.objects.get_or_create(
            kind=PeriodKind.QUARTER,
            start=q_start,
            defaults={
                "name": f"FY{year}-Q{q + 1}",
                "end": _add_months(q_start, 3) - dt.timedelta(days=1),
                "parent": fy,
            },
        )
        for m in range(3):
            m_start = months[3 * q + m]
            FiscalPeriod.objects.get_or_create(
                kind=PeriodKind.MONTH,
                start=m_start,
                defaults={
                    "name": f"FY{year}-M{3 * q + m + 1:02d}",
                    "end": _add_months(m_start, 1) - dt.timedelta(days=1),
                    "parent": quarter,
                },
            )
    return fy


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


class FiscalCalendar:
    """A fiscal year's quarters and months in order, with which quarter holds which month."""

    def __init__(self, fiscal_year: FiscalPeriod):
        self.year = fiscal_year
        self.quarters = list(FiscalPeriod.objects.filter(parent=fiscal_year, kind=PeriodKind.QUARTER))
        self.months = list(
            FiscalPeriod.objects.filter(parent__in=self.quarters, kind=PeriodKind.MONTH).order_by("start")
        )
        self.quarter_of = {m.pk: m.parent_id for m in self.months}
        self.by_id = {p.pk: p for p in [fiscal_year, *self.quarters, *self.months]}

    def check(self) -> None:
        if len(self.months) != 12 or len(self.quarters) != 4:
            raise ApplicationError(
                f"Fiscal year {self.year.name} needs 4 quarters and 12 months below it "
                f"(it has {len(self.quarters)} and {len(self.months)}).",
                {"fiscal_year": ["incomplete fiscal calendar"]},
            )

    def months_in(self, period: FiscalPeriod) -> list[FiscalPeriod]:
        """The months a period of this fiscal year covers; refuses a period of another year."""
        if period.pk == self.year.pk:
            return self.months
        if period.kind == PeriodKind.QUARTER and period.parent_id == self.year.pk:
            return [m for m in self.months if m.parent_id == period.pk]
        if period.kind == PeriodKind.MONTH and period.pk in self.quarter_of:
            return [period]
        raise ApplicationError(
            f"{period.name} is not in fiscal year {self.year.name}.", {"period": ["not in this fiscal year"]}
        )


# --- quota plans and targets ----------------------------------------------------------------------


def _clean_targets(targets: Mapping[str, Any]) -> dict[str, Decimal]:
    unknown = [k for k in targets if k not in COMPONENTS]
    if unknown:
        raise ApplicationError(
            f"Unknown component(s): {', '.join(unknown)}; use {', '.join(COMPONENTS)}.",
            {"targets": [f"unknown component {k}" for k in unknown]},
        )
    return {c: _money(targets.get(c, 0), f"targets.{c}") for c in COMPONENTS}


@transaction.atomic
def quota_plan_create(
    *, name: str, territory_plan: Plan, fiscal_year: FiscalPeriod, targets: Mapping[str, Any], actor=None
) -> QuotaPlan:
    """A draft quota plan for a territory plan and fiscal year, with the company target per component."""
    if not name or not name.strip():
        raise ApplicationError("A quota plan needs a name.", {"name": ["This field is required."]})
    if fiscal_year.kind != PeriodKind.YEAR:
        raise ApplicationError(
            f"{fiscal_year.name} is a {fiscal_year.kind}, not a fiscal year.", {"fiscal_year": ["not a year"]}
        )
    FiscalCalendar(fiscal_year).check()
    if territory_plan.status == PlanStatus.ARCHIVED:
        raise ApplicationError(
            f"Plan '{territory_plan.name}' is archived.",
            {"territory_plan": ["archived plans take no quotas"]},
        )
    clean = _clean_targets(targets)
    quota_plan = QuotaPlan.objects.create(
        name=name.strip(), territory_plan=territory_plan, fiscal_year=fiscal_year
    )
    for component, amount in clean.items():
        Quota.objects.create(quota_plan=quota_plan, period=fiscal_year, component=component, amount=amount)
        QuotaChange.objects.create(
            quota_plan=quota_plan,
            actor=actor,
            kind=QuotaChangeKind.TARGET,
            period=fiscal_year,
            component=component,
            old_amount=None,
            new_amount=amount,
            reason="Company target set",
        )
    return quota_plan


def company_targets(quota_plan: QuotaPlan) -> dict[str, Decimal]:
    rows = Quota.objects.filter(
        quota_plan=quota_plan, period=quota_plan.fiscal_year, territory__isnull=True, rep__isnull=True
    )
    found = {q.component: q.amount for q in rows}
    return {c: found.get(c, Decimal("0.00")) for c in COMPONENTS}


@transaction.atomic
def quota_plan_transition(*, quota_plan: QuotaPlan, status: str, actor=None) -> QuotaPlan:
    """draft → approved → active → archived (approved may go back to draft)."""
    quota_plan = QuotaPlan.objects.select_for_update().get(pk=quota_plan.pk)
    if status not in QuotaPlanStatus.values:
        raise ApplicationError(
            f"Unknown status {status!r}.", {"status": [f"use one of {QuotaPlanStatus.values}"]}
        )
    if status not in QUOTA_PLAN_TRANSITIONS[QuotaPlanStatus(quota_plan.status)]:
        raise ApplicationError(
            f"A {quota_plan.status} quota plan cannot become {status}.",
            {"status": [f"not allowed from {quota_plan.status}"]},
        )
    if status in (QuotaPlanStatus.APPROVED, QuotaPlanStatus.ACTIVE) and quota_plan.allocated_at is None:
        raise ApplicationError("Run the allocation first.", {"status": ["not allocated yet"]})
    quota_plan.status = status
    quota_plan.save(update_fields=["status", "updated"])
    return quota_plan


# --- allocation -----------------------------------------------------------------------------------


def _history_window(calendar: FiscalCalendar) -> tuple[dt.date, dt.date]:
    """Last fiscal year: the twelve months before this one starts (end exclusive)."""
    start = calendar.year.start
    return _add_months(start, -12), start


def allocation_inputs(quota_plan: QuotaPlan) -> tuple[allocation.AllocationInput, list[dict], list[dict]]:
    """Read what the allocation needs from the database: the hierarchy, each leaf's potential and
    last year's bookings (of the accounts it owns in the plan), company seasonality and the reps."""
    plan = quota_plan.territory_plan
    calendar = FiscalCalendar(quota_plan.fiscal_year)
    calendar.check()
    nodes = list(Territory.objects.filter(plan=plan).order_by("id").values("id", "parent_id", "code"))
    if not nodes:
        raise ApplicationError(
            f"Plan '{plan.name}' has no territories to allocate to.", {"territory_plan": ["no territories"]}
        )
    position = {n["id"]: i for i, n in enumerate(nodes)}
    parent = np.array([position.get(n["parent_id"], -1) for n in nodes], dtype=np.int64)
    owned = AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY)
    potential = np.zeros(len(nodes))
    for row in owned.values("territory_id").annotate(total=Sum("account__potential")):
        potential[position[row["territory_id"]]] = float(row["total"] or 0)
    start, end = _history_window(calendar)
    history = np.zeros((len(nodes), len(COMPONENTS)))
    past = Booking.objects.filter(booked_on__gte=start, booked_on__lt=end)
    by_leaf = (
        past.filter(account__assignments__plan=plan, account__assignments__role=AssignmentRole.PRIMARY)
        .values("account__assignments__territory_id", "component")
        .annotate(total=Sum("amount"))
    )
    for row in by_leaf:
        history[position[row["account__assignments__territory_id"]], COMPONENTS.index(row["component"])] += (
            float(row["total"])
        )
    season = np.zeros((len(COMPONENTS), 12))
    for row in (
        past.annotate(y=ExtractYear("booked_on"), m=ExtractMonth("booked_on"))
        .values("y", "m", "component")
        .annotate(total=Sum("amount"))
    ):
        index = (row["y"] * 12 + row["m"] - 1) - (start.year * 12 + start.month - 1)
        if 0 <= index < 12:
            season[COMPONENTS.index(row["component"]), index] += float(row["total"])
    memberships = list(
        TerritoryMembership.objects.filter(territory__plan=plan, rep__active=True)
        .order_by("territory_id", "rep_id")
        .values("territory_id", "rep_id", "role", "share", "rep__capacity_fte")
    )
    # Overlay and support reps carry their own overlay quotas; a territory's quota is split among its
    # primary reps, or among all its reps when it has no primary one.
    has_primary = {m["territory_id"] for m in memberships if m["role"] == MemberRole.PRIMARY}
    reps = [m for m in memberships if m["role"] == MemberRole.PRIMARY or m["territory_id"] not in has_primary]
    targets = company_targets(quota_plan)
    data = allocation.AllocationInput(
        parent=parent,
        potential=potential,
        history=history,
        seasonality_history=season,
        targets=np.array([to_cents(targets[c]) for c in COMPONENTS], dtype=np.int64),
        rep_node=np.array([position[m["territory_id"]] for m in reps], dtype=np.int64),
        rep_weight=np.array([float(m["rep__capacity_fte"]) * float(m["share"]) for m in reps]),
    )
    return data, nodes, reps


# From this many territories an allocation started from a page or the API runs in a Celery worker:
# writing a thousand territories' and their reps' quotas takes seconds, not the allocation itself.
ALLOCATE_IN_BACKGROUND_FROM = 200
JOB_ACTIVE = ("queued", "running")


def allocation_parameters(
    *,
    method: str = AllocationMethod.POTENTIAL,
    blend_weight: Any = 0.5,
    unit: Any = Decimal("1000"),
    min_ratio: Any = None,
    max_ratio: Any = None,
) -> dict:
    """Checked allocation parameters, JSON-serialisable (they are stored with the plan and passed to
    the background task); raises ApplicationError naming the field."""
    if method not in AllocationMethod.values:
        raise ApplicationError(
            f"Unknown allocation method {method!r}.", {"method": [f"use one of {AllocationMethod.values}"]}
        )
    try:
        blend = float(blend_weight)
    except (TypeError, ValueError):
        raise ApplicationError(
            "The blend weight must be a number.", {"blend_weight": ["not a number"]}
        ) from None
    if not 0 <= blend <= 1:
        raise ApplicationError(
            "The blend weight (share of potential) must be between 0 and 1.", {"blend_weight": ["0–1"]}
        )
    unit_amount = _money(unit, "unit", positive=True)
    ratios: dict[str, float | None] = {}
    for field, value in (("min_ratio", min_ratio), ("max_ratio", max_ratio)):
        try:
            ratios[field] = None if value in (None, "") else float(value)
        except (TypeError, ValueError):
            raise ApplicationError(f"{field} must be a number.", {field: ["not a number"]}) from None
    try:
        allocation.Caps(**ratios).check()
    except allocation.AllocationInputError as exc:
        field = "min_ratio" if "min" in str(exc) else "max_ratio"
        raise ApplicationError(str(exc), {field: [str(exc)]}) from None
    return {"method": method, "blend_weight": blend, "unit": str(unit_amount), **ratios}


def _check_allocatable(quota_plan: QuotaPlan) -> None:
    if quota_plan.status not in (QuotaPlanStatus.DRAFT, QuotaPlanStatus.APPROVED):
        raise ApplicationError(
            f"Quota plan '{quota_plan.name}' is {quota_plan.status}: allocation would overwrite quotas "
            "people are working to. Adjust them instead.",
            {"status": ["allocation runs on draft or approved quota plans"]},
        )
    pending = quota_plan.adjustments.filter(status=AdjustmentStatus.PENDING).count()
    if pending:
        raise ApplicationError(
            f"{pending} adjustment(s) wait for approval; approve or reject them before allocating again.",
            {"adjustments": [f"{pending} pending"]},
        )


def allocation_runs_in_background(quota_plan: QuotaPlan) -> bool:
    return (
        Territory.objects.filter(plan_id=quota_plan.territory_plan_id).count() >= ALLOCATE_IN_BACKGROUND_FROM
    )


@transaction.atomic
def quota_plan_allocate_later(
    *, quota_plan: QuotaPlan, parameters: dict, targets: Mapping[str, Any] | None = None, actor=None
) -> QuotaPlan:
    """Queue the allocation for a Celery worker (quotas.allocate_plan); the plan's `allocation_job`
    says queued → running → succeeded or failed. New targets are set at once."""
    from .tasks import allocate_plan

    quota_plan = QuotaPlan.objects.select_for_update().get(pk=quota_plan.pk)
    _check_allocatable(quota_plan)
    if quota_plan.allocation_job.get("status") in JOB_ACTIVE:
        raise ApplicationError(
            "An allocation of this quota plan is already running; wait for it to finish.",
            {"allocation_job": [quota_plan.allocation_job["status"]]},
            status=409,
        )
    parameters = allocation_parameters(**parameters)
    if targets is not None:
        _set_targets(quota_plan, _clean_targets(targets), actor)
    quota_plan.allocation_job = {
        "status": "queued",
        "parameters": parameters,
        "queued_at": timezone.now().isoformat(),
        "by": actor.get_username() if actor else None,
    }
    quota_plan.save(update_fields=["allocation_job", "updated"])
    actor_id = actor.pk if actor else None
    transaction.on_commit(lambda: allocate_plan.delay(quota_plan.pk, actor_id, parameters))
    return quota_plan


def quota_plan_job_update(*, quota_plan_id: int, **fields) -> None:
    """Record the background allocation's progress (its own small write, visible at once)."""
    with transaction.atomic():
        quota_plan = QuotaPlan.objects.select_for_update().get(pk=quota_plan_id)
        quota_plan.allocation_job = {**quota_plan.allocation_job, **fields}
        quota_plan.save(update_fields=["allocation_job", "updated"])


@transaction.atomic
def quota_plan_allocate(
    *,
    quota_plan: QuotaPlan,
    method: str = AllocationMethod.POTENTIAL,
    blend_weight: float = 0.5,
    unit: Decimal | int | str = Decimal("1000"),
    min_ratio: float | None = None,
    max_ratio: float | None = None,
    targets: Mapping[str, Any] | None = None,
    actor=None,
    background: bool = False,
) -> dict:
    """Allocate the company targets (optionally set anew) down the hierarchy, over the months and to
    the reps, replacing every territory and rep quota of the plan. Draft or approved plans only, and
    not while adjustments wait for approval (they were proposed against the amounts it replaces).
    `background` is for the Celery task running a queued allocation."""
    started = time.perf_counter()
    quota_plan = (
        QuotaPlan.objects.select_for_update()
        .select_related("fiscal_year", "territory_plan")
        .get(pk=quota_plan.pk)
    )
    _check_allocatable(quota_plan)
    if not background and quota_plan.allocation_job.get("status") in JOB_ACTIVE:
        raise ApplicationError(
            "An allocation of this quota plan is already running; wait for it to finish.",
            {"allocation_job": [quota_plan.allocation_job["status"]]},
            status=409,
        )
    checked = allocation_parameters(
        method=method, blend_weight=blend_weight, unit=unit, min_ratio=min_ratio, max_ratio=max_ratio
    )
    blend = checked["blend_weight"]
    unit_cents = to_cents(Decimal(checked["unit"]))
    caps = allocation.Caps(min_ratio=checked["min_ratio"], max_ratio=checked["max_ratio"])
    calendar = FiscalCalendar(quota_plan.fiscal_year)
    if targets is not None:
        _set_targets(quota_plan, _clean_targets(targets), actor)
    data, nodes, reps = allocation_inputs(quota_plan)
    try:
        result = allocation.allocate(data, method=method, blend_weight=blend, unit=unit_cents, caps=caps)
    except allocation.AllocationInputError as exc:
        raise ApplicationError(f"The allocation cannot run: {exc}") from None

    old_years = {
        (t, r, c): amount
        for t, r, c, amount in Quota.objects.filter(quota_plan=quota_plan, period=calendar.year).values_list(
            "territory_id", "rep_id", "component", "amount"
        )
    }
    Quota.objects.filter(quota_plan=quota_plan).exclude(territory__isnull=True, period=calendar.year).delete()
    # Rows as plain tuples, written with COPY: at 1,000 territories and 2,000 reps there are about
    # 160,000 of them, and building that many model instances alone took longer than the rest.
    rows: list[tuple] = []
    month_ids = [m.pk for m in calendar.months]
    quarter_index = {q.pk: i for i, q in enumerate(calendar.quarters)}
    month_quarter = np.array([quarter_index[calendar.quarter_of[m]] for m in month_ids])

    def emit(territory_id: int | None, rep_id: int | None, months: np.ndarray) -> None:
        # months: (components, 12) cents; quarters and the year are their sums.
        quarters = np.zeros((len(COMPONENTS), len(calendar.quarters)), dtype=np.int64)
        np.add.at(quarters, (slice(None), month_quarter), months)
        for c, component in enumerate(COMPONENTS):
            for m, month_id in enumerate(month_ids):
                rows.append((month_id, territory_id, rep_id, component, int(months[c, m])))
            for q, quarter in enumerate(calendar.quarters):
                rows.append((quarter.pk, territory_id, rep_id, component, int(quarters[c, q])))
            if territory_id is not None:
                rows.append((calendar.year.pk, territory_id, rep_id, component, int(months[c].sum())))

    emit(None, None, result.company_month)
    for i, node in enumerate(nodes):
        emit(node["id"], None, result.node_month[i])
    for r, membership in enumerate(reps):
        emit(membership["territory_id"], membership["rep_id"], result.rep_month[r])
    now = timezone.now()
    _copy(
        Quota,
        ["created", "updated", "quota_plan_id", "period_id", "territory_id", "rep_id", "component", "amount"],
        ((now, now, quota_plan.pk, p, t, r, c, from_cents(cents)) for p, t, r, c, cents in rows),
    )
    codes = {n["id"]: n["code"] for n in nodes}
    rep_names = dict(Rep.objects.filter(pk__in=[m["rep_id"] for m in reps]).values_list("pk", "name"))
    changes = []
    for period_id, territory_id, rep_id, component, cents in rows:
        if period_id != calendar.year.pk:
            continue
        old = old_years.get((territory_id, rep_id, component))
        new = from_cents(cents)
        if old != new:
            changes.append(
                (now, actor.pk if actor else None, QuotaChangeKind.ALLOCATION.value, quota_plan.pk, period_id,
                 territory_id, rep_id, codes.get(territory_id, ""), rep_names.get(rep_id, ""), component, old,
                 new, f"Allocation by {method}")
            )  # fmt: skip
    _copy(
        QuotaChange,
        ["at", "actor_id", "kind", "quota_plan_id", "period_id", "territory_id", "rep_id", "territory_code",
         "rep_name", "component", "old_amount", "new_amount", "reason"],
        changes,
    )  # fmt: skip
    parameters = {
        "method": method,
        "blend_weight": blend,
        "unit": str(from_cents(unit_cents)),
        "min_ratio": caps.min_ratio,
        "max_ratio": caps.max_ratio,
    }
    quota_plan.allocation = parameters
    quota_plan.allocated_at = timezone.now()
    quota_plan.allocated_by = actor
    quota_plan.save(update_fields=["allocation", "allocated_at", "allocated_by", "updated"])
    return {
        "parameters": parameters,
        "territories": len(nodes),
        "reps": len(reps),
        "quotas": len(rows),
        "targets": {c: str(v) for c, v in company_targets(quota_plan).items()},
        "seconds": round(time.perf_counter() - started, 3),
    }


def _copy(model, columns: list[str], rows: Iterable[tuple]) -> None:
    """COPY rows into a model's table (columns by their database names; every value bound)."""
    from psycopg import sql as pgsql

    statement = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
        pgsql.Identifier(model._meta.db_table), pgsql.SQL(", ").join(pgsql.Identifier(c) for c in columns)
    )
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _quota(quota_plan, period_id, territory_id, rep_id, component, cents) -> Quota:
    return Quota(
        quota_plan=quota_plan,
        period_id=period_id,
        territory_id=territory_id,
        rep_id=rep_id,
        component=component,
        amount=from_cents(cents),
    )


def _set_targets(quota_plan: QuotaPlan, targets: dict[str, Decimal], actor) -> None:
    for component, amount in targets.items():
        row, created = Quota.objects.get_or_create(
            quota_plan=quota_plan,
            period=quota_plan.fiscal_year,
            territory=None,
            rep=None,
            component=component,
            defaults={"amount": amount},
        )
        old = None if created else row.amount
        if not created and row.amount != amount:
            row.amount = amount
            row.save(update_fields=["amount", "updated"])
        if old != amount:
            QuotaChange.objects.create(
                quota_plan=quota_plan,
                actor=actor,
                kind=QuotaChangeKind.TARGET,
                period=quota_plan.fiscal_year,
                component=component,
                old_amount=old,
                new_amount=amount,
                reason="Company target set",
            )


# --- the ledger: load a plan's rows, move cents, roll up, save with history ------------------------


class _Tree:
    """A territory plan's hierarchy: parents, children, codes and managers."""

    def __init__(self, plan: Plan):
        rows = list(
            Territory.objects.filter(plan=plan).values("id", "parent_id", "code", "name", "manager_id")
        )
        self.parent = {r["id"]: r["parent_id"] for r in rows}
        self.code = {r["id"]: r["code"] for r in rows}
        self.name = {r["id"]: r["name"] for r in rows}
        self.manager = {r["id"]: r["manager_id"] for r in rows}
        self.by_code = {r["code"]: r["id"] for r in rows}
        self.children: dict[int | None, list[int]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: r["code"]):
            self.children[r["parent_id"]].append(r["id"])

    def path_up(self, territory_id: int | None) -> list[int]:
        """The territory and its ancestors, bottom-up."""
        path = []
        while territory_id is not None:
            path.append(territory_id)
            territory_id = self.parent.get(territory_id)
        return path

    def is_leaf(self, territory_id: int) -> bool:
        return not self.children.get(territory_id)


Key = tuple[int, int | None, int | None]  # (period, territory, rep)


class _Ledger:
    """The quota rows of one plan and component in cents, locked for the transaction; moves happen
    in months, then quarters and years are summed again for every owner touched."""

    def __init__(self, quota_plan: QuotaPlan, component: str, calendar: FiscalCalendar, tree: _Tree):
        self.quota_plan, self.component, self.calendar, self.tree = quota_plan, component, calendar, tree
        self.rows: dict[Key, int] = {}
        self.cents: dict[Key, int] = {}
        reps_of: dict[int, set[int]] = defaultdict(set)
        # Plain values, not model instances: a large plan holds tens of thousands of rows per component.
        locked = Quota.objects.select_for_update().filter(quota_plan=quota_plan, component=component)
        for pk, period_id, territory_id, rep_id, amount in locked.values_list(
            "pk", "period_id", "territory_id", "rep_id", "amount"
        ):
            key = (period_id, territory_id, rep_id)
            self.rows[key] = pk
            self.cents[key] = to_cents(amount)
            if rep_id is not None and territory_id is not None:
                reps_of[territory_id].add(rep_id)
        self.reps_of = {t: sorted(r) for t, r in reps_of.items()}
        self.rep_names = _rep_names({r for rs in reps_of.values() for r in rs})
        self.original = dict(self.cents)
        self.owners: set[tuple[int | None, int | None]] = set()

    def get(self, key: Key) -> int:
        return self.cents.get(key, 0)

    def add(self, key: Key, delta: int) -> None:
        value = self.get(key) + int(delta)
        if value < 0:
            raise ApplicationError("The change would leave a quota below zero.", {"amount": ["too large"]})
        self.cents[key] = value
        self.owners.add((key[1], key[2]))

    def push_down(self, territory_id: int, month_id: int, delta: int) -> None:
        """Change a territory's month by `delta` and spread it over its reps and its children."""
        self.add((month_id, territory_id, None), delta)
        reps = self.reps_of.get(territory_id, [])
        if reps:
            split = allocation.distribute(
                delta, np.array([self.get((month_id, territory_id, r)) for r in reps])
            )
            for rep_id, d in zip(reps, split, strict=True):
                self.add((month_id, territory_id, rep_id), int(d))
        kids = self.tree.children.get(territory_id, [])
        if kids:
            split = allocation.distribute(delta, np.array([self.get((month_id, k, None)) for k in kids]))
            for kid, d in zip(kids, split, strict=True):
                if d:
                    self.push_down(kid, month_id, int(d))

    def save(self, *, actor, kind: str, reason: str, adjustment=None, relief=None) -> list[QuotaChange]:
        calendar = self.calendar
        for territory_id, rep_id in self.owners:
            quarters: dict[int, int] = defaultdict(int)
            for month in calendar.months:
                quarters[calendar.quarter_of[month.pk]] += self.get((month.pk, territory_id, rep_id))
            for quarter_id, cents in quarters.items():
                self.cents[(quarter_id, territory_id, rep_id)] = cents
            self.cents[(calendar.year.pk, territory_id, rep_id)] = sum(quarters.values())
        changed = [k for k, v in self.cents.items() if self.original.get(k) != v]
        self.rep_names.update(_rep_names({k[2] for k in changed if k[2] and k[2] not in self.rep_names}))
        updates, creates, history = [], [], []
        for key in changed:
            period_id, territory_id, rep_id = key
            amount = from_cents(self.cents[key])
            pk = self.rows.get(key)
            if pk is None:
                creates.append(
                    _quota(self.quota_plan, period_id, territory_id, rep_id, self.component, self.cents[key])
                )
            else:
                updates.append(Quota(pk=pk, amount=amount, updated=timezone.now()))
            history.append(
                QuotaChange(
                    quota_plan=self.quota_plan,
                    actor=actor,
                    kind=kind,
                    period_id=period_id,
                    territory_id=territory_id,
                    rep_id=rep_id,
                    territory_code=self.tree.code.get(territory_id, "") if territory_id else "",
                    rep_name=self.rep_names.get(rep_id, "") if rep_id else "",
                    component=self.component,
                    old_amount=from_cents(self.original[key]) if key in self.original else None,
                    new_amount=amount,
                    adjustment=adjustment,
                    relief=relief,
                    reason=reason,
                )
            )
        Quota.objects.bulk_update(updates, ["amount", "updated"], batch_size=2000)
        for row in Quota.objects.bulk_create(creates):
            self.rows[(row.period_id, row.territory_id, row.rep_id)] = row.pk
        QuotaChange.objects.bulk_create(history)
        self.original = dict(self.cents)
        self.owners = set()
        return history


def _rep_names(ids: Iterable[int]) -> dict[int, str]:
    return dict(Rep.objects.filter(pk__in=list(ids)).values_list("pk", "name"))


# --- adjustments ----------------------------------------------------------------------------------


def _managed_level(tree: _Tree, node_id: int | None, user) -> int | None | bool:
    """The lowest territory on the way up from `node_id` that `user` manages; False when none."""
    for territory_id in tree.path_up(node_id):
        if tree.manager.get(territory_id) == user.pk:
            return territory_id
    return False


def adjustment_approver_territory(*, tree: _Tree, proposer_level: int | None, proposer) -> int | None:
    """Whose manager approves: the nearest territory above the proposer's own node that has another
    manager; None when there is none (the top: a planner or admin approves)."""
    if proposer_level is None:
        return None
    for territory_id in tree.path_up(tree.parent.get(proposer_level)):
        manager = tree.manager.get(territory_id)
        if manager is not None and manager != proposer.pk:
            return territory_id
    return None


@transaction.atomic
def quota_adjustment_propose(
    *,
    quota_plan: QuotaPlan,
    actor,
    component: str,
    period: FiscalPeriod,
    amount: Any,
    reason: str,
    from_territory: Territory | None = None,
    to_territory: Territory | None = None,
    from_rep: Rep | None = None,
    to_rep: Rep | None = None,
    territory: Territory | None = None,
) -> QuotaAdjustment:
    """Propose moving `amount` of `component` in `period` from one sibling to another: two territories
    with the same parent, or two reps of `territory`. A manager may propose only inside their own
    subtree; planners anywhere. Nothing changes until the next level up approves."""
    if not (reason or "").strip():
        raise ApplicationError(
            "Say why: an adjustment needs a reason.", {"reason": ["This field is required."]}
        )
    if quota_plan.status == QuotaPlanStatus.ARCHIVED:
        raise ApplicationError("The quota plan is archived.", {"quota_plan": ["archived"]})
    if quota_plan.allocated_at is None:
        raise ApplicationError(
            "Allocate the quota plan before adjusting it.", {"quota_plan": ["not allocated"]}
        )
    if component not in COMPONENTS:
        raise ApplicationError(
            f"Unknown component {component!r}.", {"component": [f"use one of {COMPONENTS}"]}
        )
    amount = _money(amount, "amount", positive=True)
    calendar = FiscalCalendar(quota_plan.fiscal_year)
    months = calendar.months_in(period)
    tree = _Tree(quota_plan.territory_plan)
    if from_rep is not None or to_rep is not None:
        if from_rep is None or to_rep is None or territory is None:
            raise ApplicationError(
                "Moving quota between reps needs the territory and the two reps.",
                {"territory": ["required with reps"]},
            )
        if from_rep.pk == to_rep.pk:
            raise ApplicationError("Choose two different reps.", {"to_rep": ["same as from_rep"]})
        if territory.plan_id != quota_plan.territory_plan_id:
            raise ApplicationError(
                "The territory is not in this quota plan's territory plan.", {"territory": ["other plan"]}
            )
        members = set(
            TerritoryMembership.objects.filter(territory=territory).values_list("rep_id", flat=True)
        )
        for field, rep in (("from_rep", from_rep), ("to_rep", to_rep)):
            if rep.pk not in members:
                raise ApplicationError(
                    f"{rep.name} is not a rep of {territory.code}.",
                    {field: [f"not a member of {territory.code}"]},
                )
        parent_id: int | None = territory.pk
        from_key_territory, from_key_rep = territory.pk, from_rep.pk
    else:
        if from_territory is None or to_territory is None:
            raise ApplicationError(
                "Say which territory the quota comes from and which it goes to.",
                {"from_territory": ["required"], "to_territory": ["required"]},
            )
        for field, t in (("from_territory", from_territory), ("to_territory", to_territory)):
            if t.plan_id != quota_plan.territory_plan_id:
                raise ApplicationError(
                    f"{t.code} is not in this quota plan's territory plan.", {field: ["other plan"]}
                )
        if from_territory.pk == to_territory.pk:
            raise ApplicationError(
                "Choose two different territories.", {"to_territory": ["same as from_territory"]}
            )
        if from_territory.parent_id != to_territory.parent_id:
            raise ApplicationError(
                f"{from_territory.code} and {to_territory.code} have different parents: quota moves between "
                "siblings, so the totals above them stay the same.",
                {"to_territory": ["must have the same parent as from_territory"]},
            )
        parent_id = from_territory.parent_id
        from_key_territory, from_key_rep = from_territory.pk, None
    level = None if actor.can_plan else _managed_level(tree, parent_id, actor)
    if level is False:
        raise ApplicationError(
            "You can adjust quotas only inside the part of the hierarchy you manage.",
            {"non_field_errors": ["outside your territories"]},
            status=403,
        )
    available = sum(
        to_cents(q.amount)
        for q in Quota.objects.filter(
            quota_plan=quota_plan,
            component=component,
            period__in=months,
            territory_id=from_key_territory,
            rep_id=from_key_rep,
        )
    )
    if to_cents(amount) > available:
        raise ApplicationError(
            f"Only {from_cents(available):,} of {Component(component).label.lower()} quota is there to move "
            f"in {period.name}.",
            {"amount": [f"at most {from_cents(available)}"]},
        )
    approver_territory = adjustment_approver_territory(
        tree=tree, proposer_level=level if isinstance(level, int) else None, proposer=actor
    )
    return QuotaAdjustment.objects.create(
        quota_plan=quota_plan,
        component=component,
        period=period,
        parent_territory_id=parent_id,
        from_territory=from_territory if from_rep is None else None,
        to_territory=to_territory if from_rep is None else None,
        from_rep=from_rep,
        to_rep=to_rep,
        amount=amount,
        reason=reason.strip(),
        proposed_by=actor,
        approver_territory_id=approver_territory,
        approver_id=tree.manager.get(approver_territory) if approver_territory else None,
    )


def adjustment_may_decide(*, adjustment: QuotaAdjustment, user) -> bool:
    """Only the next level up decides: the current manager of the approver territory, or at the top
    a planner or admin other than the proposer. Nobody above them can skip them."""
    if not user.is_authenticated or user.pk == adjustment.proposed_by_id:
        return False
    if adjustment.approver_territory_id is None:
        return bool(user.can_plan)
    manager_id = (
        Territory.objects.filter(pk=adjustment.approver_territory_id)
        .values_list("manager_id", flat=True)
        .first()
    )
    return manager_id == user.pk


def _decidable(adjustment: QuotaAdjustment, actor) -> QuotaAdjustment:
    adjustment = (
        QuotaAdjustment.objects.select_for_update()
        .select_related("quota_plan", "period")
        .get(pk=adjustment.pk)
    )
    if adjustment.status != AdjustmentStatus.PENDING:
        raise ApplicationError(
            f"This adjustment was already {adjustment.get_status_display().lower()}.",
            {"status": [adjustment.status]},
        )
    if not adjustment_may_decide(adjustment=adjustment, user=actor):
        who = (
            f"the manager of {adjustment.approver_territory}"
            if adjustment.approver_territory_id
            else "a planner (other than the proposer)"
        )
        raise ApplicationError(
            f"Only the next level up decides this adjustment: {who}.",
            {"non_field_errors": ["not the approver"]},
            status=403,
        )
    return adjustment


@transaction.atomic
def quota_adjustment_approve(*, adjustment: QuotaAdjustment, actor, note: str = "") -> QuotaAdjustment:
    """Approve and apply: the quota moves month by month in proportion to what the giving side holds
    in the period, and every changed row is recorded with its old and new amount."""
    adjustment = _decidable(adjustment, actor)
    quota_plan = QuotaPlan.objects.select_for_update().get(pk=adjustment.quota_plan_id)
    calendar = FiscalCalendar(quota_plan.fiscal_year)
    tree = _Tree(quota_plan.territory_plan)
    ledger = _Ledger(quota_plan, adjustment.component, calendar, tree)
    months = calendar.months_in(adjustment.period)
    cents = to_cents(adjustment.amount)
    if adjustment.from_rep_id is not None:
        t = adjustment.parent_territory_id
        held = np.array([ledger.get((m.pk, t, adjustment.from_rep_id)) for m in months])
        if cents > held.sum():
            raise ApplicationError(
                f"The rep now holds only {from_cents(int(held.sum()))} in {adjustment.period.name}; "
                "reject this adjustment and propose it again.",
                {"amount": ["more than is there now"]},
            )
        for month, d in zip(months, allocation.distribute(-cents, held), strict=True):
            ledger.add((month.pk, t, adjustment.from_rep_id), int(d))
            ledger.add((month.pk, t, adjustment.to_rep_id), -int(d))
    else:
        src, dst = adjustment.from_territory_id, adjustment.to_territory_id
        held = np.array([ledger.get((m.pk, src, None)) for m in months])
        if cents > held.sum():
            raise ApplicationError(
                f"{tree.code[src]} now holds only {from_cents(int(held.sum()))} in {adjustment.period.name}; "
                "reject this adjustment and propose it again.",
                {"amount": ["more than is there now"]},
            )
        for month, d in zip(months, allocation.distribute(-cents, held), strict=True):
            if d:
                ledger.push_down(src, month.pk, int(d))
                ledger.push_down(dst, month.pk, -int(d))
    adjustment.status = AdjustmentStatus.APPROVED
    adjustment.decided_by = actor
    adjustment.decided_at = timezone.now()
    adjustment.decision_note = (note or "").strip()
    adjustment.save(update_fields=["status", "decided_by", "decided_at", "decision_note", "updated"])
    ledger.save(actor=actor, kind=QuotaChangeKind.ADJUSTMENT, reason=adjustment.reason, adjustment=adjustment)
    return adjustment


@transaction.atomic
def quota_adjustment_reject(*, adjustment: QuotaAdjustment, actor, note: str) -> QuotaAdjustment:
    """Reject with a note saying why; nothing changes."""
    if not (note or "").strip():
        raise ApplicationError("Say why the adjustment is rejected.", {"note": ["This field is required."]})
    adjustment = _decidable(adjustment, actor)
    adjustment.status = AdjustmentStatus.REJECTED
    adjustment.decided_by = actor
    adjustment.decided_at = timezone.now()
    adjustment.decision_note = note.strip()
    adjustment.save(update_fields=["status", "decided_by", "decided_at", "decision_note", "updated"])
    return adjustment


# --- relief ---------------------------------------------------------------------------------------


def _month_fraction(month: FiscalPeriod, effective: dt.date) -> Decimal:
    """How much of a month is left from `effective` on: 1 for later months, 0 for earlier ones."""
    if month.start >= effective:
        return Decimal(1)
    if month.end < effective:
        return Decimal(0)
    days = (month.end - month.start).days + 1
    return Decimal((month.end - effective).days + 1) / Decimal(days)


def quota_plans_for_relief(*, plan_id: int, superseded_plan_id: int | None = None) -> list[int]:
    """Quota plans whose quotas follow a change. A publish that supersedes a plan: those built on the
    superseded plan. Moves in a plan: those built on it and on the plan it took over from (their
    territories are matched by code)."""
    if superseded_plan_id is not None:
        plans = [superseded_plan_id]
    else:
        plans = [plan_id]
        current = Plan.objects.filter(pk=plan_id).values("effective_from").first()
        if current and current["effective_from"]:
            plans += list(
                Plan.objects.filter(effective_to=current["effective_from"])
                .exclude(pk=plan_id)
                .values_list("pk", flat=True)
            )
    return list(
        QuotaPlan.objects.filter(territory_plan_id__in=plans, allocated_at__isnull=False)
        .exclude(status=QuotaPlanStatus.ARCHIVED)
        .values_list("pk", flat=True)
    )


@transaction.atomic
def quota_relief_for_batch(*, quota_plan: QuotaPlan, plan: Plan, batch: str, event: str) -> list[QuotaRelief]:
    """Relief for the accounts a change batch moved in `plan` (from the Change rows of the batch),
    effective the day of the change."""
    moves = []
    changes = Change.objects.filter(plan=plan, batch=batch, account__isnull=False).exclude(
        territory_from_id=F("territory_to_id")
    )
    codes = dict(Territory.objects.filter(plan=plan).values_list("pk", "code"))
    for change in changes.order_by("id").values("account_id", "territory_from_id", "territory_to_id", "at"):
        moves.append(
            (
                change["account_id"],
                codes.get(change["territory_from_id"], ""),
                codes.get(change["territory_to_id"], ""),
                timezone.localtime(change["at"]).date(),
            )
        )
    # Potential before the batch, by code: what each territory owns now, plus what left it, minus
    # what joined it.
    potential_before = _potential_by_code(plan)
    pot = _account_potentials([m[0] for m in moves])
    for account_id, src, dst, _ in moves:
        potential_before[src] += pot.get(account_id, Decimal(0))
        potential_before[dst] -= pot.get(account_id, Decimal(0))
    return _relieve(quota_plan, moves, potential_before, event=event, batch=batch)


@transaction.atomic
def quota_relief_for_publish(
    *, quota_plan: QuotaPlan, new_plan: Plan, old_plan: Plan, effective_from: dt.date, event: str
) -> list[QuotaRelief]:
    """Relief for a newly published plan that takes over mid-period: every account whose territory
    code differs between the old and the new plan moves its quota, from the effective date."""
    old = dict(
        AccountAssignment.objects.filter(plan=old_plan, role=AssignmentRole.PRIMARY).values_list(
            "account_id", "territory__code"
        )
    )
    new = dict(
        AccountAssignment.objects.filter(plan=new_plan, role=AssignmentRole.PRIMARY).values_list(
            "account_id", "territory__code"
        )
    )
    moves = [
        (account_id, old.get(account_id, ""), new.get(account_id, ""), effective_from)
        for account_id in sorted(set(old) | set(new))
        if old.get(account_id, "") != new.get(account_id, "")
    ]
    return _relieve(quota_plan, moves, _potential_by_code(old_plan), event=event, batch=f"plan-{new_plan.pk}")


def _potential_by_code(plan: Plan) -> defaultdict[str, Decimal]:
    totals: defaultdict[str, Decimal] = defaultdict(Decimal)
    rows = (
        AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY)
        .values("territory__code")
        .annotate(total=Sum("account__potential"))
    )
    for row in rows:
        totals[row["territory__code"]] += row["total"] or Decimal(0)
    return totals


def _account_potentials(ids: Sequence[int]) -> dict[int, Decimal]:
    return dict(Account.objects.filter(pk__in=list(ids)).values_list("pk", "potential"))


def _relieve(
    quota_plan: QuotaPlan,
    moves: list[tuple[int, str, str, dt.date]],
    potential_before: defaultdict[str, Decimal],
    *,
    event: str,
    batch: str,
) -> list[QuotaRelief]:
    """Move each account's share of its old territory's quota (its potential over the territory's
    potential at the time) to its new territory, for the months left in the fiscal year; accounts
    are taken in order, each against what its old territory still holds."""
    quota_plan = QuotaPlan.objects.select_for_update().select_related("fiscal_year").get(pk=quota_plan.pk)
    done = set(
        QuotaRelief.objects.filter(quota_plan=quota_plan, batch=batch).values_list(
            "account_external_id", flat=True
        )
    )
    calendar = FiscalCalendar(quota_plan.fiscal_year)
    tree = _Tree(quota_plan.territory_plan)
    ledgers = {c: _Ledger(quota_plan, c, calendar, tree) for c in COMPONENTS}
    accounts = {
        a["id"]: a
        for a in Account.objects.filter(pk__in=[m[0] for m in moves]).values(
            "id", "external_id", "name", "potential"
        )
    }
    remaining = defaultdict(Decimal, potential_before)
    reliefs = []
    for account_id, src_code, dst_code, effective in moves:
        account = accounts.get(account_id)
        if account is None or account["external_id"] in done:
            continue
        potential = account["potential"] or Decimal(0)
        src, dst = tree.by_code.get(src_code), tree.by_code.get(dst_code)
        relief = QuotaRelief(
            quota_plan=quota_plan,
            event=event,
            batch=batch,
            account_id=account_id,
            account_external_id=account["external_id"],
            account_name=account["name"],
            potential=potential,
            from_territory_id=src,
            to_territory_id=dst,
            from_code=src_code,
            to_code=dst_code,
            effective_from=effective,
        )
        reason = _relief_skip_reason(
            quota_plan, tree, src, dst, src_code, dst_code, potential, remaining[src_code], effective
        )
        if reason:
            relief.status, relief.reason = ReliefStatus.SKIPPED, reason
            relief.save()
            reliefs.append(relief)
            continue
        share = potential / remaining[src_code]
        remaining[src_code] -= potential
        remaining[dst_code] += potential
        relief.status = ReliefStatus.APPLIED
        relief.reason = (
            f"{account['name']} moved from {src_code} to {dst_code} on {effective:%Y-%m-%d}: its potential "
            f"{potential:,.0f} was {share:.1%} of {src_code}'s, so that share of {src_code}'s quota for the "
            f"rest of {calendar.year.name} moved with it."
        )
        relief.save()
        amounts = {}
        for component, ledger in ledgers.items():
            moved = 0
            for month in calendar.months:
                fraction = _month_fraction(month, effective)
                held = ledger.get((month.pk, src, None))
                cents = min(
                    held, int((Decimal(held) * share * fraction).quantize(Decimal(1), rounding=ROUND_HALF_UP))
                )
                if cents:
                    _relief_move(ledger, tree, src, dst, month.pk, cents)
                    moved += cents
            amounts[component] = str(from_cents(moved))
            ledger.save(actor=None, kind=QuotaChangeKind.RELIEF, reason=relief.reason, relief=relief)
        relief.amounts = amounts
        relief.total = sum((Decimal(v) for v in amounts.values()), Decimal(0))
        relief.save(update_fields=["amounts", "total", "updated"])
        reliefs.append(relief)
    return reliefs


def _relief_skip_reason(
    quota_plan, tree, src, dst, src_code, dst_code, potential, remaining, effective
) -> str:
    year = quota_plan.fiscal_year
    if effective > year.end:
        return f"The move takes effect on {effective}, after {year.name} ends."
    if not src_code:
        return "The account had no territory before, so no quota was attributable to it."
    if not dst_code:
        return f"The account left {src_code} for no territory (unassigned); its quota stays with {src_code}."
    if src is None or dst is None:
        missing = src_code if src is None else dst_code
        return f"Territory {missing} is not in this quota plan's hierarchy: no quota to move to or from it."
    if not tree.is_leaf(src) or not tree.is_leaf(dst):
        return "Accounts belong to leaf territories; one side is not a leaf in this quota plan's hierarchy."
    if potential <= 0:
        return "The account has no potential, so none of the quota is attributable to it."
    if remaining <= 0:
        return f"{src_code} had no potential left to attribute quota by."
    return ""


def _relief_move(ledger: _Ledger, tree: _Tree, src: int, dst: int, month_id: int, cents: int) -> None:
    """Take `cents` from `src` (and its reps) up to the common ancestor, give them to `dst`."""
    up_src, up_dst = tree.path_up(src), tree.path_up(dst)
    common = set(up_src) & set(up_dst)
    ledger.push_down(src, month_id, -cents)
    ledger.push_down(dst, month_id, cents)
    for node in up_src[1:]:
        if node in common:
            break
        ledger.add((month_id, node, None), -cents)
    for node in up_dst[1:]:
        if node in common:
            break
        ledger.add((month_id, node, None), cents)


# --- activity and retention goals -----------------------------------------------------------------


@transaction.atomic
def activity_goal_set(
    *, quota_plan: QuotaPlan, territory: Territory, metric: str, target: Any, actor
) -> ActivityGoal:
    """Set (or change) a territory's activity or retention goal. Planners anywhere; a manager inside
    their subtree."""
    if metric not in GoalMetric.values:
        raise ApplicationError(f"Unknown goal {metric!r}.", {"metric": [f"use one of {GoalMetric.values}"]})
    if territory.plan_id != quota_plan.territory_plan_id:
        raise ApplicationError(
            "The territory is not in this quota plan's territory plan.", {"territory": ["other plan"]}
        )
    if not actor.can_plan and _managed_level(_Tree(quota_plan.territory_plan), territory.pk, actor) is False:
        raise ApplicationError(
            "You can set goals only inside the part of the hierarchy you manage.",
            {"territory": ["outside your territories"]},
            status=403,
        )
    try:
        value = _decimal(10, 3)(target)
    except _Invalid as exc:
        raise ApplicationError(f"Target: {exc}", {"target": [str(exc)]}) from None
    if metric == GoalMetric.RETENTION_RATE and value > 1:
        raise ApplicationError(
            "A retention rate is a fraction between 0 and 1 (0.9 = 90%).", {"target": ["at most 1"]}
        )
    goal, _ = ActivityGoal.objects.update_or_create(
        quota_plan=quota_plan, territory=territory, metric=metric, defaults={"target": value, "set_by": actor}
    )
    return goal


# --- bookings -------------------------------------------------------------------------------------

BOOKING_FIELDS = ("external_id", "account_external_id", "amount", "booked_on", "component", "rep_external_id")
_component = _choice(Component, "component")
_amount = _decimal(16, 2)


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = _as_text(value)
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    try:
        # A spreadsheet date cell arrives as ISO text with a time ("2026-02-02T00:00:00").
        return dt.datetime.fromisoformat(text).date()
    except ValueError:
        raise _Invalid(f"'{text}' is not a date; use YYYY-MM-DD (or MM/DD/YYYY).") from None


def booking_bulk_upsert(
    *,
    rows: Sequence[Mapping[str, Any]],
    atomic: bool = True,
    actor=None,
    progress: Progress | None = None,
    row_numbers: Sequence[int] | None = None,
    input_errors: Mapping[int, Mapping[str, list[str]]] | None = None,
    dry_run: bool = False,
) -> BulkResult:
    """Create or update bookings by `external_id`, with the upsert rules and result of
    accounts.services.account_bulk_upsert (absent keys keep the stored value; a row equal to what is
    stored is `unchanged`; `atomic` writes nothing if any row fails).

    Keys: external_id (required), account_external_id, amount (≥ 0), booked_on (YYYY-MM-DD),
    component (new, renewal, upsell; labels work too) — all four required to create — and
    rep_external_id (the seller the CRM recorded; empty clears it)."""
    with transaction.atomic():
        return _booking_bulk_upsert(
            rows=rows, atomic=atomic, actor=actor, progress=progress, row_numbers=row_numbers,
            input_errors=input_errors, dry_run=dry_run,
        )  # fmt: skip


def _booking_bulk_upsert(*, rows, atomic, actor, progress, row_numbers, input_errors, dry_run) -> BulkResult:
    if row_numbers is not None and len(row_numbers) != len(rows):
        raise ValueError("row_numbers must have one number per row")
    numbers = list(row_numbers) if row_numbers is not None else list(range(1, len(rows) + 1))
    errors: list[dict[str, list[str]]] = [dict() for _ in rows]
    for index, found in (input_errors or {}).items():
        for key, messages in found.items():
            errors[index].setdefault(key, []).extend(messages)
    ext_ids = []
    for raw in rows:
        try:
            ext_ids.append(_as_text(raw.get("external_id")) if isinstance(raw, Mapping) else "")
        except _Invalid:
            ext_ids.append("")
    stored = {
        b.external_id: b
        for b in Booking.objects.select_for_update().filter(external_id__in=[e for e in ext_ids if e])
    }
    account_keys, rep_keys = set(), set()
    for raw in rows:
        if isinstance(raw, Mapping):
            for key, bucket in (("account_external_id", account_keys), ("rep_external_id", rep_keys)):
                if not _is_empty(raw.get(key)):
                    with contextlib.suppress(_Invalid):
                        bucket.add(_as_text(raw[key]))
    accounts = dict(Account.objects.filter(external_id__in=account_keys).values_list("external_id", "pk"))
    reps = dict(Rep.objects.filter(external_id__in=rep_keys).values_list("external_id", "pk"))
    seen: dict[str, int] = {}
    results, to_create, to_update = [], [], []
    created_rows: list[tuple[RowResult, Booking]] = []
    for i, raw in enumerate(rows):
        err = errors[i]
        ext = ext_ids[i]
        values: dict[str, Any] = {}
        if not isinstance(raw, Mapping):
            err.setdefault(NON_FIELD, []).append("Each row must be an object with field names as keys.")
        else:
            unknown = [k for k in raw if k not in BOOKING_FIELDS]
            if unknown:
                err.setdefault(NON_FIELD, []).append(
                    f"Unknown field(s): {', '.join(map(str, unknown))}; "
                    f"booking fields are {', '.join(BOOKING_FIELDS)}."
                )
            if not ext:
                err.setdefault("external_id", []).append("This field is required.")
            elif len(ext) > 64:
                err.setdefault("external_id", []).append("At most 64 characters.")
            elif ext in seen:
                err.setdefault("external_id", []).append(f"Duplicate of row {seen[ext]} in this batch.")
            else:
                seen[ext] = numbers[i]
            cleaners = {"amount": _amount, "booked_on": _date, "component": _component}
            for key, clean in cleaners.items():
                if key in raw:
                    if _is_empty(raw[key]):
                        err.setdefault(key, []).append("This field cannot be empty.")
                        continue
                    try:
                        values[key] = clean(raw[key])
                    except _Invalid as exc:
                        err.setdefault(key, []).append(str(exc))
            if "account_external_id" in raw:
                if _is_empty(raw["account_external_id"]):
                    err.setdefault("account_external_id", []).append("This field cannot be empty.")
                else:
                    try:
                        key = _as_text(raw["account_external_id"])
                    except _Invalid as exc:
                        err.setdefault("account_external_id", []).append(str(exc))
                        key = None
                    if key is None:
                        pass
                    elif key in accounts:
                        values["account_id"] = accounts[key]
                    else:
                        err.setdefault("account_external_id", []).append(
                            f"No account has external id '{key}'."
                        )
            if "rep_external_id" in raw:
                if _is_empty(raw["rep_external_id"]):
                    values["rep_id"] = None
                else:
                    try:
                        key = _as_text(raw["rep_external_id"])
                    except _Invalid as exc:
                        err.setdefault("rep_external_id", []).append(str(exc))
                        key = None
                    if key is None:
                        pass
                    elif key in reps:
                        values["rep_id"] = reps[key]
                    else:
                        err.setdefault("rep_external_id", []).append(f"No rep has external id '{key}'.")
        existing = stored.get(ext)
        if existing is None and not err:
            missing = [k for k in ("account_id", "amount", "booked_on", "component") if k not in values]
            for key in missing:
                name = "account_external_id" if key == "account_id" else key
                err.setdefault(name, []).append("Required to create a booking.")
        if err:
            status = ERROR
            existing = None  # an error row reports no id
        elif existing is None:
            status = CREATED
            to_create.append(Booking(external_id=ext, **values))
        elif all(getattr(existing, k) == v for k, v in values.items()):
            status = UNCHANGED
        else:
            status = UPDATED
            for k, v in values.items():
                setattr(existing, k, v)
            existing.updated = timezone.now()
            to_update.append(existing)
        results.append(RowResult(numbers[i], ext, status, err, id=existing.pk if existing else None))
        if status == CREATED:
            created_rows.append((results[-1], to_create[-1]))
        if progress and (i + 1) % 1000 == 0:
            progress("validate", i + 1, len(rows))
    result = BulkResult(rows=results, committed=False)
    if dry_run or (atomic and result.error_count):
        return result
    Booking.objects.bulk_create(to_create, batch_size=2000)
    Booking.objects.bulk_update(
        to_update, ["account_id", "amount", "booked_on", "component", "rep_id", "updated"], batch_size=2000
    )
    for row_result, booking in created_rows:
        row_result.id = booking.pk
    if progress:
        progress("write", len(rows), len(rows))
    result.committed = True
    if to_create or to_update:
        bookings_written_emit(len(to_create) + len(to_update))
        analyze_after_large_write(Booking, rows=len(to_create) + len(to_update))
    logger.info("booking bulk upsert by %s: %s", actor or "system", result.totals)
    return result


__all__ = [
    "fiscal_year_create",
    "quota_plan_create",
    "quota_plan_transition",
    "quota_plan_allocate",
    "quota_adjustment_propose",
    "quota_adjustment_approve",
    "quota_adjustment_reject",
    "quota_relief_for_batch",
    "quota_relief_for_publish",
    "activity_goal_set",
    "booking_bulk_upsert",
]

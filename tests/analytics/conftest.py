"""A published plan with quotas and bookings over the shared `world`: the ground the attainment,
fairness and warning tests stand on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import pytest

from analytics.demo import ensure_fiscal_periods
from quotas.choices import Component, PeriodKind, QuotaPlanStatus
from quotas.models import Booking, FiscalPeriod, Quota, QuotaPlan
from territories.choices import PlanStatus
from territories.models import Plan, Territory

AS_OF = dt.date(2026, 6, 30)
MONTHLY = Decimal("1000")  # each leaf's new-business quota per month


@dataclass
class Sales:
    world: object
    plan: Plan
    quota_plan: QuotaPlan
    year: FiscalPeriod
    bookings: list[Booking]


def publish(plan: Plan, effective_from: dt.date, effective_to: dt.date | None = None) -> Plan:
    plan.status = PlanStatus.ACTIVE if effective_to is None else PlanStatus.ARCHIVED
    plan.effective_from = effective_from
    plan.effective_to = effective_to
    plan.published_at = dt.datetime.combine(effective_from, dt.time(), tzinfo=dt.UTC)
    plan.save()
    return plan


def book(account, amount, on: dt.date, component=Component.NEW_BUSINESS, ext=None) -> Booking:
    ext = ext or f"B-{account.pk}-{on.isoformat()}-{amount}-{component}"
    return Booking.objects.create(
        external_id=ext, account=account, amount=Decimal(str(amount)), booked_on=on, component=component
    )


def add_quotas(quota_plan: QuotaPlan, territory: Territory, monthly: Decimal, rep=None, weights=None) -> None:
    """Monthly rows for the leaf (and its rep), quarter and year rows as their sums."""
    year = quota_plan.fiscal_year
    weights = weights or [1] * 12
    months = list(FiscalPeriod.objects.filter(kind=PeriodKind.MONTH, parent__parent=year).order_by("start"))
    for owner_rep in [None, rep] if rep else [None]:
        for month, w in zip(months, weights, strict=True):
            Quota.objects.create(
                quota_plan=quota_plan,
                period=month,
                territory=territory,
                rep=owner_rep,
                component=Component.NEW_BUSINESS,
                amount=monthly * w,
            )


@pytest.fixture
def sales(world) -> Sales:
    """The world plan in effect from 1 Jan 2026, FY2026 quotas of 1,000 a month per leaf (rep too),
    and bookings by 30 June: East leaves on pace, West T1 far ahead, West T2 far behind."""
    ensure_fiscal_periods([2026])
    year = FiscalPeriod.objects.get(name="FY2026")
    plan = publish(world.plan, dt.date(2026, 1, 1))
    quota_plan = QuotaPlan.objects.create(
        name="FY2026 quotas", territory_plan=plan, fiscal_year=year, status=QuotaPlanStatus.ACTIVE
    )
    for code, leaf in world.leaves.items():
        add_quotas(quota_plan, leaf, MONTHLY, rep=world.reps[code])
    bookings = []
    amounts = {"E-T1": 6000, "E-T2": 6000, "W-T1": 9000, "W-T2": 1500}
    for code, amount in amounts.items():
        first, second = world.accounts[code]
        bookings.append(book(first, amount / 2, dt.date(2026, 2, 10)))
        bookings.append(book(second, amount / 2, dt.date(2026, 5, 20)))
    return Sales(world=world, plan=plan, quota_plan=quota_plan, year=year, bookings=bookings)

"""Fiscal periods, quota plans, quotas and bookings."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from accounts.models import Account, Rep, TimeStamped
from territories.models import Plan, Territory

from .choices import Component, PeriodKind, QuotaPlanStatus


class FiscalPeriod(TimeStamped):
    """A fiscal year, quarter or month; quarters and months point at their parent. `end` is inclusive."""

    kind = models.CharField(max_length=10, choices=PeriodKind.choices)
    name = models.CharField(max_length=50, help_text="FY2026, FY2026-Q1, FY2026-M01")
    start = models.DateField()
    end = models.DateField()
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )

    class Meta:
        ordering = ["start", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "start"], name="fiscal_period_unique_kind_start"),
            models.UniqueConstraint(fields=["name"], name="fiscal_period_unique_name"),
            models.CheckConstraint(condition=Q(end__gte=F("start")), name="fiscal_period_end_after_start"),
        ]

    def __str__(self) -> str:
        return self.name


class QuotaPlan(TimeStamped):
    """Ties a territory plan to a fiscal year. The company target per component is the Quota row
    with neither territory nor rep for the year period."""

    name = models.CharField(max_length=200)
    territory_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="quota_plans")
    fiscal_year = models.ForeignKey(
        FiscalPeriod,
        on_delete=models.PROTECT,
        related_name="quota_plans",
        limit_choices_to={"kind": PeriodKind.YEAR},
    )
    status = models.CharField(max_length=10, choices=QuotaPlanStatus.choices, default=QuotaPlanStatus.DRAFT)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.name


class Quota(TimeStamped):
    """A target in one period and component for the company (no territory, no rep), a territory, or a
    rep (with the territory the quota comes from)."""

    quota_plan = models.ForeignKey(QuotaPlan, on_delete=models.CASCADE, related_name="quotas")
    period = models.ForeignKey(FiscalPeriod, on_delete=models.PROTECT, related_name="quotas")
    territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.CASCADE, related_name="quotas"
    )
    rep = models.ForeignKey(Rep, null=True, blank=True, on_delete=models.CASCADE, related_name="quotas")
    component = models.CharField(max_length=10, choices=Component.choices)
    amount = models.DecimalField(max_digits=16, decimal_places=2)

    class Meta:
        ordering = ["quota_plan_id", "period_id", "territory_id", "rep_id", "component"]
        constraints = [
            models.UniqueConstraint(
                fields=["quota_plan", "period", "territory", "rep", "component"],
                nulls_distinct=False,
                name="quota_unique_per_owner_period_component",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="quota_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(rep__isnull=True) | Q(territory__isnull=False), name="quota_rep_needs_territory"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.period} {self.component} {self.amount}"


class Booking(TimeStamped):
    """A closed-won deal from the CRM, credited to whoever owned the account on `booked_on`."""

    external_id = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="bookings")
    amount = models.DecimalField(max_digits=16, decimal_places=2)
    booked_on = models.DateField(db_index=True)
    component = models.CharField(max_length=10, choices=Component.choices)
    rep = models.ForeignKey(
        Rep,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="bookings",
        help_text="The seller the CRM recorded, if any.",
    )

    class Meta:
        ordering = ["booked_on", "id"]
        indexes = [models.Index(fields=["account", "booked_on"], name="booking_account_date_idx")]

    def __str__(self) -> str:
        return f"{self.external_id} {self.amount} on {self.booked_on}"

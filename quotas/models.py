"""Fiscal periods, quota plans, quotas and bookings."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from accounts.models import Account, Rep, TimeStamped
from territories.models import Plan, Territory

from .choices import (
    AdjustmentStatus,
    Component,
    GoalMetric,
    PeriodKind,
    QuotaChangeKind,
    QuotaPlanStatus,
    ReliefStatus,
)


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
    allocation = models.JSONField(
        default=dict,
        blank=True,
        help_text="Parameters of the last allocation run (method, weight, unit, caps).",
    )
    allocated_at = models.DateTimeField(null=True, blank=True)
    allocated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    allocation_job = models.JSONField(
        default=dict,
        blank=True,
        help_text="A large plan's allocation runs in the background: status, parameters, times, error.",
    )

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


class QuotaAdjustment(TimeStamped):
    """A manager's proposal to move quota between two siblings (two child territories of one node, or
    two reps of one leaf territory) for one component in one period, with a reason. Moving quota
    between siblings keeps every total above them unchanged. It is applied only when the next level
    up approves: the manager of the nearest ancestor above the proposer's own node, or a planner at
    the top (`approver_territory` empty)."""

    quota_plan = models.ForeignKey(QuotaPlan, on_delete=models.CASCADE, related_name="adjustments")
    component = models.CharField(max_length=10, choices=Component.choices)
    period = models.ForeignKey(FiscalPeriod, on_delete=models.PROTECT, related_name="+")
    parent_territory = models.ForeignKey(
        Territory,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Whose children (or, for reps, the leaf whose reps) trade quota; empty = top level.",
    )
    from_territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    to_territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    from_rep = models.ForeignKey(Rep, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    to_rep = models.ForeignKey(Rep, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    amount = models.DecimalField(max_digits=16, decimal_places=2)
    reason = models.TextField()
    status = models.CharField(
        max_length=10, choices=AdjustmentStatus.choices, default=AdjustmentStatus.PENDING
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="quota_adjustments"
    )
    approver_territory = models.ForeignKey(
        Territory,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Whose manager approves; empty = a planner or admin (the top of the hierarchy).",
    )
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="quota_adjustment_amount_positive"),
            models.CheckConstraint(
                condition=(
                    Q(
                        from_territory__isnull=False,
                        to_territory__isnull=False,
                        from_rep__isnull=True,
                        to_rep__isnull=True,
                    )
                    | Q(
                        from_territory__isnull=True,
                        to_territory__isnull=True,
                        from_rep__isnull=False,
                        to_rep__isnull=False,
                    )
                ),
                name="quota_adjustment_two_territories_or_two_reps",
            ),
        ]

    def __str__(self) -> str:
        return f"Adjustment {self.pk} {self.component} {self.amount} ({self.status})"


class QuotaRelief(TimeStamped):
    """One account's move between territories mid-period and the quota that moved with it (per
    component, over the months left in the fiscal year). Skipped lines say why nothing moved."""

    quota_plan = models.ForeignKey(QuotaPlan, on_delete=models.CASCADE, related_name="reliefs")
    event = models.CharField(max_length=30, help_text="The domain event that caused it.")
    batch = models.CharField(max_length=64, help_text="The change batch (or published plan) it came from.")
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    account_external_id = models.CharField(max_length=64)
    account_name = models.CharField(max_length=255)
    potential = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    from_territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_code = models.CharField(max_length=50, blank=True)
    to_code = models.CharField(max_length=50, blank=True)
    effective_from = models.DateField()
    amounts = models.JSONField(default=dict, blank=True, help_text="Quota moved per component.")
    total = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    status = models.CharField(max_length=10, choices=ReliefStatus.choices)
    reason = models.TextField()

    class Meta:
        ordering = ["-effective_from", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["quota_plan", "batch", "account_external_id"],
                name="quota_relief_once_per_batch_account",
            )
        ]

    def __str__(self) -> str:
        return f"Relief {self.account_external_id} {self.from_code}→{self.to_code} {self.total}"


class QuotaChange(models.Model):
    """Append-only history of quota amounts: who, when, old and new value, and why."""

    quota_plan = models.ForeignKey(QuotaPlan, on_delete=models.CASCADE, related_name="changes")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=12, choices=QuotaChangeKind.choices)
    period = models.ForeignKey(FiscalPeriod, on_delete=models.PROTECT, related_name="+")
    territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rep = models.ForeignKey(Rep, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    territory_code = models.CharField(max_length=50, blank=True)
    rep_name = models.CharField(max_length=200, blank=True)
    component = models.CharField(max_length=10, choices=Component.choices)
    old_amount = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    new_amount = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    adjustment = models.ForeignKey(
        QuotaAdjustment, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    relief = models.ForeignKey(
        QuotaRelief, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["quota_plan", "at"], name="quota_change_plan_at_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.territory_code or 'company'} {self.old_amount}→{self.new_amount}"


class ActivityGoal(TimeStamped):
    """An activity or retention goal for a territory, kept beside its quota: calls or meetings per
    week, or a retention rate (a fraction 0–1)."""

    quota_plan = models.ForeignKey(QuotaPlan, on_delete=models.CASCADE, related_name="activity_goals")
    territory = models.ForeignKey(Territory, on_delete=models.CASCADE, related_name="activity_goals")
    metric = models.CharField(max_length=20, choices=GoalMetric.choices)
    target = models.DecimalField(max_digits=10, decimal_places=3)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["quota_plan_id", "territory_id", "metric"]
        constraints = [
            models.UniqueConstraint(
                fields=["quota_plan", "territory", "metric"], name="activity_goal_unique_per_territory_metric"
            ),
            models.CheckConstraint(condition=Q(target__gte=0), name="activity_goal_target_non_negative"),
            models.CheckConstraint(
                condition=~Q(metric=GoalMetric.RETENTION_RATE) | Q(target__lte=1),
                name="activity_goal_retention_at_most_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.territory} {self.metric} {self.target}"

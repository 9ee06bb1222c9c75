"""Reads of quotas and bookings, scoped like the territories they belong to."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from territories import selectors as territory_selectors
from territories.models import Plan, Territory

from .choices import AdjustmentStatus
from .models import ActivityGoal, Booking, Quota, QuotaAdjustment, QuotaChange, QuotaPlan, QuotaRelief


def quota_plan_list(*, user) -> QuerySet[QuotaPlan]:
    """Quota plans over territory plans the user may see."""
    return QuotaPlan.objects.filter(
        territory_plan__in=territory_selectors.plan_list(user=user)
    ).select_related("territory_plan", "fiscal_year")


def quota_list(*, user, quota_plan: QuotaPlan) -> QuerySet[Quota]:
    """Quotas of a quota plan: all for planners (the company-level targets only for them); a manager
    those of their subtrees, reps' splits included; a rep their territories' totals and their own
    split, not other reps' splits."""
    quotas = Quota.objects.filter(quota_plan=quota_plan).select_related("period", "territory", "rep")
    if not user.is_authenticated or not user.is_active:
        return quotas.none()
    ids = territory_selectors.visible_territory_ids(user=user, plan=quota_plan.territory_plan)
    if ids is None:
        return quotas
    managed = Territory.objects.filter(plan=quota_plan.territory_plan, manager=user)
    subtree = {i for t in managed for i in territory_selectors.territory_subtree_ids(territory=t)}
    return quotas.filter(territory_id__in=ids).filter(
        Q(territory_id__in=subtree) | Q(rep__isnull=True) | Q(rep__user=user)
    )


def booking_list(*, user, plan: Plan | None = None) -> QuerySet[Booking]:
    """Bookings of the accounts the user may see (ownership in `plan`, today's plan by default), plus a
    rep's own recorded bookings."""
    bookings = Booking.objects.select_related("account", "rep")
    if not user.is_authenticated or not user.is_active:
        return bookings.none()
    if user.sees_everything:
        return bookings
    visible_accounts = territory_selectors.account_list(user=user, plan=plan).values("pk")
    return bookings.filter(Q(account__in=visible_accounts) | Q(rep__user=user))


def quota_plan_get(*, user, pk) -> QuotaPlan | None:
    return quota_plan_list(user=user).filter(pk=pk).first()


def adjustment_list(*, user, quota_plan: QuotaPlan) -> QuerySet[QuotaAdjustment]:
    """Adjustments a user may see: planners all; a manager those inside their subtrees, those they
    proposed and those waiting for them."""
    adjustments = QuotaAdjustment.objects.filter(quota_plan=quota_plan).select_related(
        "period", "parent_territory", "from_territory", "to_territory", "from_rep", "to_rep",
        "proposed_by", "approver", "approver_territory", "decided_by",
    )  # fmt: skip
    if not user.is_authenticated or not user.is_active:
        return adjustments.none()
    if user.sees_everything:
        return adjustments
    ids = territory_selectors.visible_territory_ids(user=user, plan=quota_plan.territory_plan) or []
    return adjustments.filter(
        Q(parent_territory_id__in=ids) | Q(proposed_by=user) | Q(approver_territory__manager=user)
    )


def adjustment_list_all(*, user) -> QuerySet[QuotaAdjustment]:
    """`adjustment_list` over every quota plan the user may see."""
    adjustments = QuotaAdjustment.objects.filter(quota_plan__in=quota_plan_list(user=user)).select_related(
        "period", "parent_territory", "from_territory", "to_territory", "from_rep", "to_rep",
        "proposed_by", "approver", "approver_territory", "decided_by",
    )  # fmt: skip
    if not user.is_authenticated or not user.is_active:
        return adjustments.none()
    if user.sees_everything:
        return adjustments
    subtree = {
        i
        for t in Territory.objects.filter(manager=user)
        for i in territory_selectors.territory_subtree_ids(territory=t)
    }
    member_of = Territory.objects.filter(memberships__rep__user=user).values("pk")
    return adjustments.filter(
        Q(parent_territory_id__in=subtree)
        | Q(parent_territory__in=member_of)
        | Q(proposed_by=user)
        | Q(approver_territory__manager=user)
    )


def adjustments_awaiting(*, user, quota_plan: QuotaPlan) -> QuerySet[QuotaAdjustment]:
    """Pending adjustments this user is the one to decide (the next level up from the proposer)."""
    pending = adjustment_list(user=user, quota_plan=quota_plan).filter(status=AdjustmentStatus.PENDING)
    top = Q(approver_territory__isnull=True) if user.is_authenticated and user.can_plan else Q(pk__in=[])
    return pending.filter(Q(approver_territory__manager=user) | top).exclude(proposed_by=user)


def quota_change_list(*, user, quota_plan: QuotaPlan) -> QuerySet[QuotaChange]:
    """Quota history the user may see (company-level rows for planners only)."""
    changes = QuotaChange.objects.filter(quota_plan=quota_plan).select_related(
        "actor", "period", "adjustment", "relief"
    )
    if not user.is_authenticated or not user.is_active:
        return changes.none()
    ids = territory_selectors.visible_territory_ids(user=user, plan=quota_plan.territory_plan)
    return changes if ids is None else changes.filter(territory_id__in=ids)


def relief_list(*, user, quota_plan: QuotaPlan) -> QuerySet[QuotaRelief]:
    """Relief lines touching a territory the user may see."""
    reliefs = QuotaRelief.objects.filter(quota_plan=quota_plan)
    if not user.is_authenticated or not user.is_active:
        return reliefs.none()
    ids = territory_selectors.visible_territory_ids(user=user, plan=quota_plan.territory_plan)
    return (
        reliefs if ids is None else reliefs.filter(Q(from_territory_id__in=ids) | Q(to_territory_id__in=ids))
    )


def activity_goal_list(*, user, quota_plan: QuotaPlan) -> QuerySet[ActivityGoal]:
    goals = ActivityGoal.objects.filter(quota_plan=quota_plan).select_related("territory", "set_by")
    if not user.is_authenticated or not user.is_active:
        return goals.none()
    ids = territory_selectors.visible_territory_ids(user=user, plan=quota_plan.territory_plan)
    return goals if ids is None else goals.filter(territory_id__in=ids)

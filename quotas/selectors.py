"""Reads of quotas and bookings, scoped like the territories they belong to."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from territories import selectors as territory_selectors
from territories.models import Plan

from .models import Booking, Quota, QuotaPlan


def quota_plan_list(*, user) -> QuerySet[QuotaPlan]:
    """Quota plans over territory plans the user may see."""
    return QuotaPlan.objects.filter(
        territory_plan__in=territory_selectors.plan_list(user=user)
    ).select_related("territory_plan", "fiscal_year")


def quota_list(*, user, quota_plan: QuotaPlan) -> QuerySet[Quota]:
    """Quotas of a quota plan: all for planners; a manager or rep those of their visible territories
    (the company-level targets only for planners)."""
    quotas = Quota.objects.filter(quota_plan=quota_plan).select_related("period", "territory", "rep")
    if not user.is_authenticated or not user.is_active:
        return quotas.none()
    ids = territory_selectors.visible_territory_ids(user=user, plan=quota_plan.territory_plan)
    return quotas if ids is None else quotas.filter(territory_id__in=ids)


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

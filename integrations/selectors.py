"""Reads of the integrations app, scoped to the requesting user."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import ImportJob, WebhookDelivery, WebhookSubscription


def webhook_subscription_list(*, user) -> QuerySet[WebhookSubscription]:
    """A user's own subscriptions: a subscription belongs to the login that made it (an admin
    manages others' through the admin site)."""
    if not user.is_authenticated or not user.is_active or not user.sees_everything:
        return WebhookSubscription.objects.none()
    return WebhookSubscription.objects.filter(owner=user).select_related("owner").order_by("-created", "-id")


def webhook_delivery_list(*, subscription: WebhookSubscription) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(subscription=subscription).order_by("-created", "-id")


def import_job_list(*, user) -> QuerySet[ImportJob]:
    """Import jobs a user may follow: planners and admins see every import (they share the data);
    nobody else runs imports."""
    if not user.is_authenticated or not user.is_active or not user.can_plan:
        return ImportJob.objects.none()
    return ImportJob.objects.select_related("created_by").defer("data").order_by("-created", "-id")

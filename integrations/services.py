"""Writes of the integrations app: webhook subscriptions and deliveries, import jobs.

Who may subscribe: only users who see everything (admins, planners, CRM integrations). Events name
plans and accounts from the whole company, and filtering each payload down to a manager's subtree
would make the same event differ per receiver; so a manager or rep cannot subscribe, and a
subscription whose owner loses that role (or is deactivated) stops receiving events."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.choices import Role
from tessera_common.errors import ApplicationError

from . import webhooks
from .choices import DeliveryStatus, WebhookEvent
from .models import WebhookDelivery, WebhookSubscription

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
MIN_SECRET_LENGTH = 16
_url_validator = URLValidator(schemes=["http", "https"])


def _subscriber_check(user) -> None:
    if user is None or not user.is_authenticated or not user.is_active or not user.sees_everything:
        raise ApplicationError(
            "Only admins, planners and CRM integrations can subscribe to webhooks: events cover the "
            "whole company.",
            status=403,
        )


def _clean_url(url) -> str:
    text = str(url or "").strip()
    if not text:
        raise ApplicationError("A webhook needs a URL.", {"url": ["This field is required."]})
    if len(text) > 500:
        raise ApplicationError("The URL is too long.", {"url": ["Use at most 500 characters."]})
    try:
        _url_validator(text)
    except ValidationError:
        raise ApplicationError(
            f"'{text[:100]}' is not an http or https URL.", {"url": ["Enter an http:// or https:// URL."]}
        ) from None
    return text


def _clean_events(events) -> list[str]:
    if isinstance(events, str) or not isinstance(events, Iterable):
        raise ApplicationError("Events must be a list.", {"events": ["Give a list of event names."]})
    chosen = list(dict.fromkeys(str(e) for e in events))
    unknown = [e for e in chosen if e not in WebhookEvent.values]
    if unknown:
        raise ApplicationError(
            f"Unknown event(s): {', '.join(unknown)}; use {', '.join(WebhookEvent.values)}.",
            {"events": [f"unknown: {', '.join(unknown)}"]},
        )
    if not chosen:
        raise ApplicationError("Choose at least one event.", {"events": ["This list may not be empty."]})
    return chosen


def _clean_secret(secret) -> str:
    if secret is None or secret == "":
        return SECRET_PREFIX + secrets.token_urlsafe(32)
    text = str(secret)
    if not MIN_SECRET_LENGTH <= len(text) <= 128 or not text.isprintable() or text != text.strip():
        raise ApplicationError(
            f"A secret has {MIN_SECRET_LENGTH} to 128 printable characters without surrounding spaces; "
            "leave it out to have one generated.",
            {"secret": [f"Use {MIN_SECRET_LENGTH} to 128 printable characters."]},
        )
    return text


@transaction.atomic
def webhook_subscription_create(
    *, owner, url: str, events, name: str = "", secret: str | None = None, active: bool = True
) -> WebhookSubscription:
    """Subscribe `url` to `events`. A secret is generated unless given; it is returned on the object
    once and used to sign every delivery."""
    _subscriber_check(owner)
    return WebhookSubscription.objects.create(
        owner=owner,
        name=(name or "").strip()[:100],
        url=_clean_url(url),
        events=_clean_events(events),
        secret=_clean_secret(secret),
        active=bool(active),
    )


@transaction.atomic
def webhook_subscription_update(
    *, subscription: WebhookSubscription, actor, **changes
) -> WebhookSubscription:
    """Change name, url, events or active; `secret` rotates the signing secret (None → a new one)."""
    _subscriber_check(actor)
    subscription = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
    if "url" in changes:
        subscription.url = _clean_url(changes["url"])
    if "events" in changes:
        subscription.events = _clean_events(changes["events"])
    if "name" in changes:
        subscription.name = (changes["name"] or "").strip()[:100]
    if "active" in changes:
        subscription.active = bool(changes["active"])
    if "secret" in changes:
        subscription.secret = _clean_secret(changes["secret"])
    subscription.save()
    return subscription


@transaction.atomic
def webhook_subscription_delete(*, subscription: WebhookSubscription, actor) -> None:
    """Remove a subscription and its delivery log; deliveries still queued find no row and stop."""
    _subscriber_check(actor)
    subscription.delete()


def _receiving_subscriptions(event: str):
    owners_who_see_everything = Q(owner__is_superuser=True) | Q(
        owner__role__in=[Role.ADMIN, Role.PLANNER, Role.INTEGRATION]
    )
    return WebhookSubscription.objects.filter(
        owners_who_see_everything, active=True, owner__is_active=True, events__contains=[event]
    )


def webhook_deliveries_create(*, event: str, payload: dict, enqueue: bool = True) -> list[WebhookDelivery]:
    """One pending delivery per active subscription to `event`; the sending is left to Celery once
    the rows are committed. Never sends anything itself."""
    now = timezone.now()
    with transaction.atomic():
        deliveries = []
        for subscription in _receiving_subscriptions(event):
            delivery_id = uuid.uuid4()
            delivery = WebhookDelivery(
                subscription=subscription,
                event=event,
                payload={
                    "id": str(delivery_id),
                    "event": event,
                    "created": now.isoformat(),
                    "data": payload,
                },
                next_attempt_at=now,
            )
            deliveries.append(delivery)
        WebhookDelivery.objects.bulk_create(deliveries)
        if enqueue and deliveries:
            ids = [d.pk for d in deliveries]
            transaction.on_commit(lambda: _enqueue(ids))
    return deliveries


def _enqueue(delivery_ids: list[int]) -> None:
    from .tasks import deliver_webhook

    for delivery_id in delivery_ids:
        try:
            deliver_webhook.delay(delivery_id)
        except Exception:
            # The broker is down: the delivery stays pending in the log, where its owner can see it
            # and ask for it again (POST .../redeliver/); the request that caused the event goes on.
            logger.exception("Could not enqueue webhook delivery %s", delivery_id)


def webhook_delivery_attempt(*, delivery_id: int) -> int | None:
    """Make one attempt at a pending delivery and record it. Returns the seconds to wait before the
    next attempt, or None when the delivery is finished (succeeded, failed for good, or gone).

    No transaction is held open during the HTTP request: a slow receiver must not keep rows locked."""
    delivery = (
        WebhookDelivery.objects.select_related("subscription", "subscription__owner")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    subscription = delivery.subscription
    owner = subscription.owner
    if not subscription.active or not owner.is_active or not owner.sees_everything:
        _finish(delivery, DeliveryStatus.FAILED, None, "The subscription was deactivated before delivery.")
        return None

    body = webhooks.body_bytes(delivery.payload)
    result = webhooks.post(
        subscription.url,
        body,
        {
            webhooks.SIGNATURE_HEADER: webhooks.sign(subscription.secret, body),
            webhooks.EVENT_HEADER: delivery.event,
            webhooks.DELIVERY_HEADER: delivery.payload.get("id", str(delivery.pk)),
        },
    )
    now = timezone.now()
    attempts = delivery.attempts + 1
    log = [
        *delivery.attempt_log,
        {
            "attempt": attempts,
            "at": now.isoformat(),
            "response_code": result.response_code,
            "error": result.error,
            "ms": result.duration_ms,
            "response": result.response_excerpt,
        },
    ]
    if result.ok:
        status, wait = DeliveryStatus.SUCCEEDED, None
    elif result.retryable and attempts < webhooks.MAX_ATTEMPTS:
        status, wait = DeliveryStatus.PENDING, webhooks.backoff_seconds(attempts)
    else:
        status, wait = DeliveryStatus.FAILED, None
    error = result.error
    if status == DeliveryStatus.FAILED and result.retryable:
        error += f" Gave up after {attempts} attempts."
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts,
        attempt_log=log,
        status=status,
        response_code=result.response_code,
        error=error,
        next_attempt_at=now + dt.timedelta(seconds=wait) if wait is not None else None,
        delivered_at=now if status == DeliveryStatus.SUCCEEDED else None,
        updated=now,
    )
    return wait


def _finish(delivery: WebhookDelivery, status: str, code: int | None, error: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=status, response_code=code, error=error, next_attempt_at=None, updated=timezone.now()
    )


@transaction.atomic
def webhook_delivery_redeliver(*, delivery: WebhookDelivery, actor) -> WebhookDelivery:
    """Send a finished or stuck delivery again, as a fresh series of attempts with the same body."""
    _subscriber_check(actor)
    delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if not delivery.subscription.active:
        raise ApplicationError(
            "The subscription is inactive; activate it before redelivering.", {"active": ["false"]}
        )
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.error = ""
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["status", "attempts", "error", "next_attempt_at", "updated"])
    transaction.on_commit(lambda: _enqueue([delivery.pk]))
    return delivery


def webhook_deliveries_requeue_stalled(*, older_than_seconds: int = 600) -> int:
    """Queue again the pending deliveries whose next attempt is long overdue: their task was lost
    (the broker was down when the event happened, or a worker died holding it). Returns how many."""
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    ids = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lt=cutoff)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:1000]
    )
    if ids:
        WebhookDelivery.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now())
        _enqueue(ids)
    return len(ids)

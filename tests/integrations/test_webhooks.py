"""Webhooks: subscriptions through the API, deliveries signed over the raw body, sent by Celery only,
retried with exponential backoff and logged attempt by attempt."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest
from django.utils import timezone

from integrations import services, webhooks
from integrations.choices import DeliveryStatus
from integrations.models import WebhookDelivery, WebhookSubscription
from territories.choices import PlanStatus
from territories.services import account_assignments_move
from tessera_common.errors import ApplicationError
from tessera_common.events import ASSIGNMENT_CHANGED, JOB_FINISHED, PLAN_PUBLISHED, domain_event

from .conftest import client_for

pytestmark = pytest.mark.django_db


def subscribe(user, url="http://127.0.0.1:9/hook", events=(PLAN_PUBLISHED,), **kw) -> WebhookSubscription:
    return services.webhook_subscription_create(owner=user, url=url, events=list(events), **kw)


# --- signing --------------------------------------------------------------------------------------


def test_signature_is_the_hmac_of_the_raw_body_and_verifies():
    body = webhooks.body_bytes({"b": 1, "a": "é"})
    assert body == '{"a":"é","b":1}'.encode()  # compact, sorted, UTF-8: stable across retries
    expected = hmac.new(b"s3cret-s3cret-s3cret", body, hashlib.sha256).hexdigest()
    assert webhooks.sign("s3cret-s3cret-s3cret", body) == f"sha256={expected}"
    assert webhooks.verify("s3cret-s3cret-s3cret", body, f"sha256={expected}")
    assert not webhooks.verify("another-secret-xxxx", body, f"sha256={expected}")
    assert not webhooks.verify("s3cret-s3cret-s3cret", body + b" ", f"sha256={expected}")
    assert not webhooks.verify("s3cret-s3cret-s3cret", body, None)


def test_backoff_doubles_from_thirty_seconds():
    assert [webhooks.backoff_seconds(n) for n in range(1, 6)] == [30, 60, 120, 240, 480]
    assert webhooks.MAX_ATTEMPTS == 6


# --- subscriptions through the API ----------------------------------------------------------------


def test_integration_creates_a_subscription_and_sees_the_secret_once(world):
    client = client_for(world.integration)
    response = client.post(
        "/api/v1/webhooks/",
        {"url": "https://crm.example.com/tessera", "events": [PLAN_PUBLISHED, JOB_FINISHED], "name": "CRM"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30
    assert created["events"] == [PLAN_PUBLISHED, JOB_FINISHED] and created["owner"] == "crm"
    listed = client.get("/api/v1/webhooks/").json()
    assert [s["id"] for s in listed["results"]] == [created["id"]]
    assert "secret" not in listed["results"][0]
    assert "secret" not in client.get(f"/api/v1/webhooks/{created['id']}/").json()

    rotated = client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret/")
    assert rotated.status_code == 200 and rotated.json()["secret"] not in ("", created["secret"])
    assert WebhookSubscription.objects.get().secret == rotated.json()["secret"]
    blank = client.patch(f"/api/v1/webhooks/{created['id']}/", {"secret": ""}, format="json")
    assert blank.status_code == 400 and "secret" in blank.json()["errors"]
    patched = client.patch(f"/api/v1/webhooks/{created['id']}/", {"active": False}, format="json")
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert client.delete(f"/api/v1/webhooks/{created['id']}/").status_code == 204
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://crm.example.com/x", "events": [PLAN_PUBLISHED]}, "url"),
        ({"url": "not a url", "events": [PLAN_PUBLISHED]}, "url"),
        ({"url": "https://crm.example.com/x", "events": ["plan.deleted"]}, "events"),
        ({"url": "https://crm.example.com/x", "events": []}, "events"),
        ({"url": "https://crm.example.com/x", "events": "plan.published"}, "events"),
        ({"url": "https://crm.example.com/x", "events": [PLAN_PUBLISHED], "secret": "short"}, "secret"),
    ],
)
def test_bad_subscriptions_are_refused_naming_the_field(world, body, field):
    response = client_for(world.planner).post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert not WebhookSubscription.objects.exists()


def test_managers_reps_and_read_only_tokens_cannot_subscribe(world):
    body = {"url": "https://crm.example.com/x", "events": [PLAN_PUBLISHED]}
    assert client_for(world.manager_west).post("/api/v1/webhooks/", body, format="json").status_code == 403
    assert client_for(world.rep_user).get("/api/v1/webhooks/").status_code == 403
    read_only = client_for(world.integration, scopes=["read"])
    assert read_only.post("/api/v1/webhooks/", body, format="json").status_code == 403
    assert read_only.get("/api/v1/webhooks/").status_code == 200
    with pytest.raises(ApplicationError):
        subscribe(world.manager_west)


def test_a_subscription_belongs_to_its_user(world):
    mine = subscribe(world.planner)
    other = client_for(world.integration)
    assert other.get(f"/api/v1/webhooks/{mine.pk}/").status_code == 404
    assert other.get(f"/api/v1/webhooks/{mine.pk}/deliveries/").status_code == 404
    assert other.delete(f"/api/v1/webhooks/{mine.pk}/").status_code == 404


# --- fan-out: events become deliveries, queued and never sent inline -------------------------------


def test_an_event_creates_deliveries_for_matching_active_subscriptions_only(
    world, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("integrations.tasks.deliver_webhook.delay", lambda pk: sent.append(pk))
    wanted = subscribe(world.integration, events=[PLAN_PUBLISHED, ASSIGNMENT_CHANGED])
    subscribe(world.planner, events=[JOB_FINISHED])
    subscribe(world.admin, active=False)
    demoted = subscribe(world.planner, events=[PLAN_PUBLISHED])
    world.planner.role = "manager"
    world.planner.save()

    with django_capture_on_commit_callbacks(execute=True):
        domain_event.send(sender=PLAN_PUBLISHED, event=PLAN_PUBLISHED, payload={"plan_id": 7})

    delivery = WebhookDelivery.objects.get()
    assert delivery.subscription == wanted and delivery.status == DeliveryStatus.PENDING
    assert delivery.payload["event"] == PLAN_PUBLISHED and delivery.payload["data"] == {"plan_id": 7}
    assert not WebhookDelivery.objects.filter(subscription=demoted).exists()
    assert sent == [delivery.pk]  # enqueued once committed, not delivered


def test_the_request_that_moves_accounts_only_enqueues(
    world, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    """A manual move in the active plan emits assignment.changed; the delivery is queued for Celery
    and nothing reaches the receiver while the request runs."""
    sent = []
    monkeypatch.setattr("integrations.tasks.deliver_webhook.delay", lambda pk: sent.append(pk))
    subscribe(world.integration, url=receiver.url, events=[ASSIGNMENT_CHANGED])
    world.plan.status = PlanStatus.ACTIVE
    world.plan.effective_from = dt.date(2026, 1, 1)
    world.plan.save()
    account = world.accounts["E-T1"][0]
    with django_capture_on_commit_callbacks(execute=True):
        account_assignments_move(plan=world.plan, account_ids=[account.pk], territory=world.leaves["W-T2"])
    delivery = WebhookDelivery.objects.get()
    assert delivery.payload["data"]["account_ids"] == [account.pk]
    assert sent == [delivery.pk]
    assert receiver.requests == []
    assert delivery.attempts == 0


def test_a_broken_listener_does_not_break_the_event(world, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("integrations.services.webhook_deliveries_create", boom)
    domain_event.send(sender=PLAN_PUBLISHED, event=PLAN_PUBLISHED, payload={})  # must not raise


# --- attempts -------------------------------------------------------------------------------------


def pending_delivery(world, url, events=(PLAN_PUBLISHED,)) -> WebhookDelivery:
    subscription = subscribe(world.integration, url=url, events=events, secret="a-receiver-secret-123")
    [delivery] = services.webhook_deliveries_create(
        event=PLAN_PUBLISHED, payload={"plan_id": 3, "plan_name": "FY27 é"}, enqueue=False
    )
    assert delivery.subscription == subscription
    return delivery


def test_a_delivery_posts_the_signed_raw_body_and_is_logged(world, receiver):
    delivery = pending_delivery(world, receiver.url)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk) is None

    [request] = receiver.requests
    assert request.path == "/hooks/tessera?x=1"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Tessera-Event"] == PLAN_PUBLISHED
    assert request.headers["X-Tessera-Delivery"] == delivery.payload["id"]
    # The receiver's check: HMAC of the bytes it got, with the secret it was given.
    assert webhooks.verify("a-receiver-secret-123", request.body, request.headers["X-Tessera-Signature"])
    assert json.loads(request.body)["data"] == {"plan_id": 3, "plan_name": "FY27 é"}

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 1
    assert delivery.response_code == 200 and delivery.delivered_at is not None
    assert delivery.attempt_log[0]["response_code"] == 200 and delivery.attempt_log[0]["error"] == ""


def test_server_errors_are_retried_with_backoff_until_the_sixth_attempt(world, receiver):
    receiver.statuses = [503]
    delivery = pending_delivery(world, receiver.url)
    waits = []
    before = timezone.now()
    for _ in range(webhooks.MAX_ATTEMPTS):
        waits.append(services.webhook_delivery_attempt(delivery_id=delivery.pk))
        delivery.refresh_from_db()
        if waits[-1] is not None:
            due = delivery.next_attempt_at - before
            assert due >= dt.timedelta(seconds=waits[-1])
    assert waits == [30, 60, 120, 240, 480, None]
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 6
    assert delivery.response_code == 503 and "Gave up after 6 attempts" in delivery.error
    assert [a["attempt"] for a in delivery.attempt_log] == [1, 2, 3, 4, 5, 6]
    # Every retry carries the same bytes and so the same signature.
    assert len({r.body for r in receiver.requests}) == 1
    assert len({r.headers["X-Tessera-Signature"] for r in receiver.requests}) == 1
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk) is None  # finished: no more


def test_a_refusal_is_not_retried_and_a_later_success_ends_the_retries(world, receiver):
    receiver.statuses = [400]
    refused = pending_delivery(world, receiver.url)
    assert services.webhook_delivery_attempt(delivery_id=refused.pk) is None
    refused.refresh_from_db()
    assert refused.status == DeliveryStatus.FAILED and refused.attempts == 1 and refused.response_code == 400

    receiver.statuses = [500, 200]
    receiver.requests.clear()
    refused.subscription.delete()
    flaky = pending_delivery(world, receiver.url)
    assert services.webhook_delivery_attempt(delivery_id=flaky.pk) == 30
    assert services.webhook_delivery_attempt(delivery_id=flaky.pk) is None
    flaky.refresh_from_db()
    assert flaky.status == DeliveryStatus.SUCCEEDED and flaky.attempts == 2


def test_network_errors_are_retried(world):
    delivery = pending_delivery(world, "http://127.0.0.1:9/nothing-listens-here")
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == 30
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.response_code is None
    assert "Connection" in delivery.error or "refused" in delivery.error.lower()


def test_the_task_retries_through_celery_with_the_backoff_countdown(world, receiver, monkeypatch):
    from celery.exceptions import Retry

    from integrations.tasks import deliver_webhook

    receiver.statuses = [502]
    delivery = pending_delivery(world, receiver.url)
    countdowns = []

    def fake_retry(*args, countdown=None, **kwargs):
        countdowns.append(countdown)
        return Retry()

    monkeypatch.setattr(deliver_webhook, "retry", fake_retry)
    with pytest.raises(Retry):
        deliver_webhook.run(delivery.pk)
    with pytest.raises(Retry):
        deliver_webhook.run(delivery.pk)
    assert countdowns == [30, 60]


def test_the_owner_reads_the_delivery_log_and_can_redeliver(
    world, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("integrations.tasks.deliver_webhook.delay", lambda pk: sent.append(pk))
    receiver.statuses = [404]
    delivery = pending_delivery(world, receiver.url)
    services.webhook_delivery_attempt(delivery_id=delivery.pk)
    client = client_for(world.integration)
    log = client.get(f"/api/v1/webhooks/{delivery.subscription_id}/deliveries/").json()
    assert log["count"] == 1
    [row] = log["results"]
    assert row["status"] == "failed" and row["response_code"] == 404 and row["attempts"] == 1
    assert row["event"] == PLAN_PUBLISHED and row["attempt_log"][0]["response_code"] == 404

    url = f"/api/v1/webhooks/{delivery.subscription_id}/deliveries/{delivery.pk}/redeliver/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)
    assert sent == [delivery.pk]
    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert client_for(world.planner).post(url).status_code == 404  # not their subscription


def test_stalled_pending_deliveries_are_queued_again(world, monkeypatch):
    sent = []
    monkeypatch.setattr("integrations.tasks.deliver_webhook.delay", lambda pk: sent.append(pk))
    subscribe(world.integration)
    subscribe(world.planner)
    stalled, fresh = services.webhook_deliveries_create(event=PLAN_PUBLISHED, payload={}, enqueue=False)
    WebhookDelivery.objects.filter(pk=stalled.pk).update(
        next_attempt_at=timezone.now() - dt.timedelta(hours=1)
    )
    from integrations.tasks import requeue_stalled_webhooks

    assert requeue_stalled_webhooks.run() == 1
    assert sent == [stalled.pk]
    assert fresh.pk not in sent

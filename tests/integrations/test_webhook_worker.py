"""One webhook delivery end to end: a domain event emitted in a committed transaction, the listener
queueing it, a real Celery worker process sending it, and a real HTTP receiver checking the
signature."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection, transaction

from integrations import services, webhooks
from integrations.choices import DeliveryStatus
from integrations.models import WebhookDelivery
from integrations.tasks import deliver_webhook
from tessera_common.events import PLAN_PUBLISHED, event_emit

from ..factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_a_signed_webhook(receiver, monkeypatch):
    owner = UserFactory(username="crm-worker", role="integration")
    services.webhook_subscription_create(
        owner=owner, url=receiver.url, events=[PLAN_PUBLISHED], secret="worker-test-secret-1234"
    )
    # The task goes to this test's own queue, never to a dev worker on the default one.
    queue = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(
        deliver_webhook, "delay", lambda pk: deliver_webhook.apply_async(args=[pk], queue=queue)
    )
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": (
            f"postgis://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", "1", "--pool", "solo"]
        + ["-l", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with transaction.atomic():
            event_emit(PLAN_PUBLISHED, {"plan_id": 1, "plan_name": "FY27"})
            assert not WebhookDelivery.objects.exists()  # nothing before the commit
        delivery = WebhookDelivery.objects.get()
        assert receiver.requests == []  # queued, not sent by this process
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.poll() is None:
            delivery.refresh_from_db()
            if delivery.status != DeliveryStatus.PENDING:
                break
            time.sleep(0.2)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
    assert delivery.status == DeliveryStatus.SUCCEEDED, (delivery.status, delivery.error, output)
    assert delivery.attempts == 1 and delivery.response_code == 200
    [request] = receiver.requests
    assert webhooks.verify("worker-test-secret-1234", request.body, request.headers["X-Tessera-Signature"])
    assert request.headers["X-Tessera-Event"] == PLAN_PUBLISHED
    assert request.headers["X-Tessera-Delivery"] == delivery.payload["id"]
    assert "Traceback" not in output, output

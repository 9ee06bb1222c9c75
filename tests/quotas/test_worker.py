"""The quota tasks on a real Celery worker process against the real broker: a queued allocation
runs to succeeded, and relief for a batch of moved accounts is computed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from quotas import services, tasks
from quotas.models import Quota, QuotaPlan, QuotaRelief
from territories.services import account_assignments_move

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_allocates_and_relieves(world, quota_plan):
    queue = f"test-{uuid.uuid4().hex[:8]}"
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

    def wait(condition) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not condition() and worker.poll() is None:
            time.sleep(0.2)

    try:
        parameters = services.allocation_parameters(method="potential", unit="100")
        services.quota_plan_job_update(quota_plan_id=quota_plan.pk, status="queued", parameters=parameters)
        tasks.allocate_plan.apply_async(args=[quota_plan.pk, world.planner.pk, parameters], queue=queue)
        wait(
            lambda: (
                QuotaPlan.objects.get(pk=quota_plan.pk).allocation_job.get("status")
                in ("succeeded", "failed")
            )
        )
        quota_plan.refresh_from_db()
        result = account_assignments_move(
            plan=world.plan, account_ids=[world.accounts["W-T1"][0].pk], territory=world.leaves["E-T1"]
        )
        payload = {"plan_id": world.plan.pk, "batch": result["batch"], "accounts": 1}
        tasks.compute_relief.apply_async(args=[quota_plan.pk, "assignment.changed", payload], queue=queue)
        wait(lambda: QuotaRelief.objects.filter(quota_plan=quota_plan).exists())
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
    assert quota_plan.allocation_job["status"] == "succeeded", (quota_plan.allocation_job, output)
    assert Quota.objects.filter(quota_plan=quota_plan, territory=world.west).exists()
    relief = QuotaRelief.objects.get(quota_plan=quota_plan)
    assert (relief.from_code, relief.to_code) == ("W-T1", "E-T1")
    assert "Traceback" not in output, output

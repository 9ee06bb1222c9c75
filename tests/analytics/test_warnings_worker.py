"""The warning check on a real Celery worker process against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from analytics import services, tasks
from analytics.models import WarningCheck, WarningSign
from territories.choices import JobStatus

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_check(sales):
    services.plan_balance_snapshot_take(plan=sales.plan)
    # Created without enqueueing: the task goes to this test's own queue, never to a dev worker.
    check = services.warning_check_create(actor=sales.world.planner, enqueue=False)
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
    try:
        tasks.check_warnings_run.apply_async(args=[check.pk], queue=queue)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            check.refresh_from_db()
            if check.status in (JobStatus.SUCCEEDED, JobStatus.FAILED) or worker.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
    assert check.status == JobStatus.SUCCEEDED, (check.status, check.error, output)
    assert "Traceback" not in output, output
    check = WarningCheck.objects.get(pk=check.pk)
    assert check.progress == 100 and check.result["plan"] == sales.plan.pk
    assert WarningSign.objects.filter(last_check=check).count() == check.result["found"]

"""The balance task on a real Celery worker process against the real broker: one job runs to a new
scenario, one asked to stop ends cancelled without one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from territories import tasks
from territories.balancing import balance_job_create
from territories.choices import JobStatus
from territories.models import BalanceJob, Plan

from .test_balancing import lopsided_plan

ROOT = Path(__file__).resolve().parents[2]


def wait_for(job: BalanceJob, worker: subprocess.Popen, statuses: set[str]) -> BalanceJob:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in statuses or worker.poll() is not None:
            break
        time.sleep(0.2)
    return job


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_balances_a_plan_and_honours_cancel():
    plan = lopsided_plan(accounts_per_side=8)
    # Created without enqueueing: the task goes to this test's own queue, never to a dev worker.
    job = balance_job_create(plan=plan, parameters={"metrics": ["count"], "tolerance": 0.2}, enqueue=False)
    stopped = balance_job_create(plan=plan, parameters={"metrics": ["count"]}, enqueue=False)
    # Asked to stop before the worker claims it: the worker runs it, and the solver's first
    # should_stop() (read from the database by the worker) ends it.
    BalanceJob.objects.filter(pk=stopped.pk).update(cancel_requested=True)
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
        tasks.balance_plan.apply_async(args=[job.pk], queue=queue)
        tasks.balance_plan.apply_async(args=[stopped.pk], queue=queue)
        job = wait_for(job, worker, {JobStatus.SUCCEEDED, JobStatus.FAILED})
        stopped = wait_for(stopped, worker, {JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED})
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
    assert job.status == JobStatus.SUCCEEDED, (job.status, job.error, output)
    assert job.progress == 100 and job.produced_plan.based_on == plan
    assert job.result["moved_count"] > 0
    assert stopped.status == JobStatus.CANCELLED, (stopped.status, stopped.error, output)
    assert stopped.finished_at is not None
    assert Plan.objects.filter(based_on=plan).count() == 1
    assert "Traceback" not in output, output

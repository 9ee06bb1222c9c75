"""Celery tasks: the service is tested elsewhere; here the task itself, eagerly and on a real
worker process against the real broker."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from territories import tasks
from territories.choices import PlanStatus
from territories.models import AccountAssignment, Plan

from ..factories import AccountFactory, GeoUnitFactory, PlanFactory, TerritoryFactory, assign_unit

ROOT = Path(__file__).resolve().parents[2]


def ended_plan():
    return Plan.objects.create(
        name="Ended",
        status=PlanStatus.ACTIVE,
        effective_from=dt.date(2020, 1, 1),
        effective_to=dt.date(2021, 1, 1),
        published_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )


@pytest.mark.django_db
def test_activate_due_plans_task_runs_the_service():
    plan = ended_plan()
    assert tasks.activate_due_plans.apply().get() == [plan.pk]
    plan.refresh_from_db()
    assert plan.status == PlanStatus.ARCHIVED


@pytest.mark.django_db
def test_materialize_task_and_command():
    plan = PlanFactory()
    territory = TerritoryFactory(plan=plan)
    assign_unit(plan, GeoUnitFactory(), territory)
    AccountFactory()
    result = tasks.materialize_plan.apply(args=[plan.pk]).get()
    assert result["by_source"] == {"geography": 1}
    call_command("materialize_plan", str(plan.pk), verbosity=0)
    assert AccountAssignment.objects.filter(plan=plan).count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_archives_ended_plans():
    plan = ended_plan()
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
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queue,
            "-c",
            "1",
            "--pool",
            "solo",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        tasks.activate_due_plans.apply_async(queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            plan.refresh_from_db()
            if plan.status == PlanStatus.ARCHIVED or worker.poll() is not None:
                break
            time.sleep(0.2)
        assert plan.status == PlanStatus.ARCHIVED, "the worker did not archive the plan"
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
    assert "Traceback" not in output, output
    assert settings.CELERY_BROKER_URL.startswith("redis://")

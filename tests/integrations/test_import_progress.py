"""Import progress is written through its own connection, so a poller sees it while the import's
own transaction is still open."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from django.db import connections

from integrations import imports
from integrations.choices import ImportStatus
from integrations.models import ImportJob

from ..factories import UserFactory


@pytest.mark.django_db(transaction=True)
def test_progress_is_visible_to_other_connections_while_the_import_runs(monkeypatch):
    planner = UserFactory(username="progress-planner", role="planner")
    # Never queued for a real worker: this test runs the job itself.
    monkeypatch.setattr("integrations.tasks.run_import.delay", lambda pk: SimpleNamespace(id="not-sent"))
    data = b"External ID,Name\n" + b"".join(b"PR-%d,Account %d\n" % (i, i) for i in range(50))
    job = imports.import_job_create(
        kind="accounts", data=data, file_name="a.csv", actor=planner, run_small_now=False
    )
    assert job.status == ImportStatus.QUEUED

    seen: list[int] = []
    original = imports._ProgressWriter.__call__

    def read_from_another_connection() -> int:
        box: list[int] = []

        def read() -> None:
            box.append(ImportJob.objects.get(pk=job.pk).progress)
            connections.close_all()

        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
        return box[0]

    def spy(self, percent: int, message: str) -> None:
        original(self, percent, message)
        if message.startswith("Writing") and not seen:
            # The import is inside its transaction now; what does a poller see?
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                progress = read_from_another_connection()
                if progress >= 55:
                    break
                time.sleep(0.05)
            seen.append(progress)

    monkeypatch.setattr(imports._ProgressWriter, "__call__", spy)
    job = imports.import_job_run(job=job)
    assert job.status == ImportStatus.SUCCEEDED and job.progress == 100
    assert seen and seen[0] >= 55, seen

"""Account and rep file imports through the API: a job with progress and a per-row report, run by
the existing importers (accounts.imports + the bulk upsert services)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import Workbook

from accounts.models import Account, Rep
from integrations import imports
from integrations.choices import ImportStatus
from integrations.models import ImportJob
from tessera_common.events import domain_event

from .conftest import client_for

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"


def upload(client, kind, content: bytes, name="file.csv", **fields):
    return client.post(
        "/api/v1/imports/",
        {"kind": kind, "file": SimpleUploadedFile(name, content), **fields},
        format="multipart",
    )


def test_a_small_accounts_csv_is_imported_at_once_and_reported(world, django_capture_on_commit_callbacks):
    client = client_for(world.planner)
    events = []

    def listen(sender, event, payload, **kwargs):
        events.append((event, payload))

    domain_event.connect(listen)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = upload(client, "accounts", (FIXTURES / "accounts.csv").read_bytes(), "accounts.csv")
    finally:
        domain_event.disconnect(listen)
    assert response.status_code == 202, response.json()
    job = response.json()
    assert job["status"] == "succeeded" and job["progress"] == 100, job
    assert job["kind"] == "accounts" and job["file_name"] == "accounts.csv"
    report = job["report"]
    assert report["committed"] is True and report["totals"]["created"] >= 2
    assert "CSV" in report["description"]
    assert Account.objects.filter(external_id="ACC-002", parent__external_id="ACC-001").exists()
    assert client.get(f"/api/v1/imports/{job['id']}/").json()["status"] == "succeeded"
    assert ImportJob.objects.get(pk=job["id"]).data is None  # the upload is not kept
    assert events == [
        (
            "job.finished",
            {
                "job_id": job["id"],
                "kind": "import",
                "import_kind": "accounts",
                "plan_id": None,
                "status": "succeeded",
                "message": job["message"],
                "error": None,
            },
        )
    ]


def test_row_errors_name_row_and_field_and_nothing_is_written(world):
    content = b"External ID,Name,Revenue\nX-1,Good,100\nX-2,,abc\nX-3,Fine,-5\n"
    job = upload(client_for(world.planner), "accounts", content).json()
    assert job["status"] == "failed"
    assert "Nothing was written" in job["message"] and "partial" in job["message"]
    rows = {r["row"]: r for r in job["report"]["rows"]}
    assert set(rows) == {3, 4}
    assert "name" in rows[3]["errors"] and "revenue" in rows[3]["errors"]
    assert "revenue" in rows[4]["errors"]
    assert not Account.objects.filter(external_id__startswith="X-").exists()


def test_partial_writes_the_good_rows_and_dry_run_writes_nothing(world):
    content = b"External ID,Name\nP-1,Good\nP-2,\n"
    client = client_for(world.planner)
    dry = upload(client, "accounts", b"External ID,Name\nD-1,Dry\n", dry_run="true").json()
    assert dry["status"] == "succeeded" and dry["report"]["committed"] is False
    assert "Dry run" in dry["message"] and not Account.objects.filter(external_id="D-1").exists()
    partial = upload(client, "accounts", content, partial="true").json()
    assert partial["status"] == "succeeded" and partial["report"]["totals"]["error"] == 1
    assert list(
        Account.objects.filter(external_id__startswith="P-").values_list("external_id", flat=True)
    ) == ["P-1"]


def test_reps_from_xlsx_with_a_column_mapping(world):
    book = Workbook()
    sheet = book.active
    sheet.append(["Employee", "Rep Name", "Capacity"])
    sheet.append(["R-900", "Ada Seller", 0.5])
    buffer = io.BytesIO()
    book.save(buffer)
    job = upload(
        client_for(world.planner), "reps", buffer.getvalue(), "reps.xlsx", mapping="Employee=external_id"
    ).json()
    assert job["status"] == "succeeded", job
    rep = Rep.objects.get(external_id="R-900")
    assert rep.name == "Ada Seller" and float(rep.capacity_fte) == 0.5
    assert job["report"]["columns"] == {
        "Employee": "external_id",
        "Rep Name": "name",
        "Capacity": "capacity_fte",
    }


def test_a_file_problem_fails_the_job_with_a_clear_message(world):
    job = upload(client_for(world.planner), "accounts", b"Foo,Bar\n1,2\n").json()
    assert job["status"] == "failed" and "Missing required columns" in job["error"]
    assert "columns" in job["report"]["errors"]
    old_excel = upload(
        client_for(world.planner), "accounts", b"\xd0\xcf\x11\xe0" + b"\0" * 100, "a.xls"
    ).json()
    assert old_excel["status"] == "failed" and ".xls" in old_excel["error"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"kind": "territories"}, "kind"), ({"kind": "accounts"}, "file"), ({}, "kind")],
)
def test_bad_uploads_are_400s_naming_the_field(world, fields, field):
    response = client_for(world.planner).post("/api/v1/imports/", fields, format="multipart")
    assert response.status_code == 400 and field in response.json()["errors"]


def test_only_planners_with_write_tokens_import(world):
    content = b"External ID,Name\nQ-1,Nope\n"
    assert upload(client_for(world.integration), "accounts", content).status_code == 403
    assert upload(client_for(world.manager_west), "accounts", content).status_code == 403
    assert upload(client_for(world.planner, scopes=["read"]), "accounts", content).status_code == 403
    assert client_for(world.manager_west).get("/api/v1/imports/").status_code == 403
    assert not Account.objects.filter(external_id="Q-1").exists()


def test_a_large_file_is_queued_for_a_worker(world, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(imports, "SYNC_LIMIT_BYTES", 10)
    monkeypatch.setattr(
        "integrations.tasks.run_import.delay", lambda pk: sent.append(pk) or type("R", (), {"id": "t"})
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = upload(client_for(world.planner), "accounts", b"External ID,Name\nL-1,Later\n").json()
    assert job["status"] == "queued" and sent == [job["id"]]
    assert not Account.objects.filter(external_id="L-1").exists()

    from integrations.tasks import run_import

    result = run_import.run(job["id"])  # what the worker does
    assert result["status"] == ImportStatus.SUCCEEDED
    assert Account.objects.filter(external_id="L-1").exists()
    assert run_import.run(job["id"])["status"] == ImportStatus.SUCCEEDED  # a second delivery is a no-op


def test_an_unexpected_error_fails_the_job_without_a_server_error(world, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("accounts.services.account_bulk_upsert", broken)
    response = upload(client_for(world.planner), "accounts", b"External ID,Name\nU-1,Oops\n")
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "failed" and job["error"] == "RuntimeError: disk on fire"


def test_jobs_are_listed_newest_first_and_filtered(world):
    client = client_for(world.planner)
    first = upload(client, "accounts", b"External ID,Name\nF-1,One\n").json()
    second = upload(client, "reps", b"External ID,Name\nF-2,Two\n").json()
    listed = client.get("/api/v1/imports/").json()
    assert [j["id"] for j in listed["results"]] == [second["id"], first["id"]]
    assert [j["id"] for j in client.get("/api/v1/imports/?kind=reps").json()["results"]] == [second["id"]]
    assert client.get("/api/v1/imports/?status=bogus").status_code == 400

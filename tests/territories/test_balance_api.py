"""The balance API: planners start jobs (202), creators and planners follow and cancel them, and
errors keep the one shape {"message", "errors"}."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.services import api_token_create
from territories.balancing import balance_job_run
from territories.choices import JobStatus
from territories.models import BalanceJob

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def start(client, plan, **body):
    return client.post(f"/api/v1/plans/{plan.pk}/balance/", body, format="json")


def test_planner_starts_a_job_that_is_enqueued_on_commit(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = start(client_for(world.planner), world.plan, mode="design", metrics=["count"])
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["progress"] == 0 and body["created_by"] == "planner"
    assert body["parameters"]["mode"] == "design" and body["parameters"]["metrics"] == ["count"]
    assert len(callbacks) == 1
    assert BalanceJob.objects.get(pk=body["id"]).plan == world.plan


def test_only_planners_and_admins_start_jobs(world):
    for user in (world.manager_west, world.rep_user, world.integration):
        response = start(client_for(user), world.plan)
        assert response.status_code == 403
        assert response.json() == {"message": "Only planners and admins can balance a plan.", "errors": {}}
    assert start(client_for(world.admin), world.plan).status_code == 202
    assert APIClient().post(f"/api/v1/plans/{world.plan.pk}/balance/").status_code == 401
    assert start(client_for(world.planner), world.plan.__class__(pk=999999)).status_code == 404


def test_a_read_only_token_cannot_start_a_job(world):
    _, key = api_token_create(user=world.planner, name="ro", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.post(f"/api/v1/plans/{world.plan.pk}/balance/", {}, format="json")
    assert response.status_code == 403 and "write" in response.json()["message"]


def test_bad_parameters_come_back_in_the_error_shape(world):
    response = start(client_for(world.planner), world.plan, mode="guess", tolerance=3)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"message", "errors"} and "mode" in body["errors"]
    response = start(client_for(world.planner), world.plan, tolerance=3, subtree="W")
    assert response.status_code == 400 and "tolerance" in response.json()["errors"]
    response = start(client_for(world.planner), world.plan, subtree="NOPE")
    assert response.status_code == 400 and "NOPE" in response.json()["message"]
    assert not BalanceJob.objects.exists()


def test_jobs_are_visible_to_their_creator_and_planners_only(world):
    response = start(client_for(world.admin), world.plan)
    job_id = response.json()["id"]
    assert client_for(world.planner).get(f"/api/v1/jobs/{job_id}/").status_code == 200
    assert client_for(world.admin).get(f"/api/v1/jobs/{job_id}/").status_code == 200
    assert client_for(world.manager_west).get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert client_for(world.outsider).post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 404
    listed = client_for(world.planner).get("/api/v1/jobs/").json()
    assert [j["id"] for j in listed["results"]] == [job_id]
    assert client_for(world.rep_user).get("/api/v1/jobs/").json()["results"] == []


def test_cancel_a_queued_job_then_conflict(world):
    job_id = start(client_for(world.planner), world.plan).json()["id"]
    response = client_for(world.planner).post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    response = client_for(world.planner).post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 409 and "nothing to cancel" in response.json()["message"]


def test_a_failed_job_shows_its_message(world):
    job_id = start(client_for(world.planner), world.plan, level="units").json()["id"]
    balance_job_run(job=BalanceJob.objects.get(pk=job_id))
    body = client_for(world.planner).get(f"/api/v1/jobs/{job_id}/").json()
    assert body["status"] == JobStatus.FAILED
    assert "no geography units assigned" in body["error"]


def test_schema_lists_the_balance_endpoints(db, tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "/api/v1/plans/{id}/balance/" in text and "/api/v1/jobs/{id}/cancel/" in text

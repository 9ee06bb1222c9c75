"""The analytics API: attainment, account drill, fairness and warnings, scoped per persona."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from analytics.models import WarningCheck, WarningSign
from territories.choices import JobStatus

pytestmark = pytest.mark.django_db

AS_OF = "2026-06-30"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_unauthenticated_gets_401(sales):
    assert APIClient().get("/api/v1/attainment/").status_code == 401
    assert APIClient().get("/api/v1/warnings/").status_code == 401


def test_attainment_for_planner_and_manager(sales):
    body = client_for(sales.world.planner).get(f"/api/v1/attainment/?as_of={AS_OF}&level=territory").json()
    assert {r["code"] for r in body["rows"]} == {"E-T1", "E-T2", "W-T1", "W-T2"}
    assert body["period"]["key"] == "ytd" and body["quota_plan"]["name"] == "FY2026 quotas"

    body = (
        client_for(sales.world.manager_west).get(f"/api/v1/attainment/?as_of={AS_OF}&level=territory").json()
    )
    assert {r["code"] for r in body["rows"]} == {"W-T1", "W-T2"}
    east = sales.world.east.pk
    response = client_for(sales.world.manager_west).get(f"/api/v1/attainment/?territory={east}")
    assert response.status_code == 404
    assert response.json()["errors"] == {"territory": [str(east)]}


def test_rep_sees_own_row_only(sales):
    body = client_for(sales.world.rep_user).get(f"/api/v1/attainment/?as_of={AS_OF}&level=rep").json()
    assert [r["name"] for r in body["rows"]] == ["Rep E-T1"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=decade", "period"),
        ("as_of=30/06/2026", "as_of"),
        ("territory=abc", "territory"),
        ("level=x", "level"),
    ],
)
def test_bad_query_is_a_400_naming_the_field(sales, query, field):
    response = client_for(sales.world.planner).get(f"/api/v1/attainment/?{query}")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_account_drill_needs_a_leaf(sales):
    api = client_for(sales.world.manager_west)
    leaf = sales.world.leaves["W-T2"].pk
    body = api.get(f"/api/v1/attainment/accounts/?territory={leaf}&as_of={AS_OF}").json()
    assert body["booked"] == 1500 and len(body["accounts"]) == 2
    response = api.get(f"/api/v1/attainment/accounts/?territory={sales.world.west.pk}")
    assert response.status_code == 400 and "territory" in response.json()["errors"]
    assert api.get("/api/v1/attainment/accounts/").status_code == 400


def test_fairness_figures(sales):
    body = client_for(sales.world.planner).get(f"/api/v1/fairness/?as_of={AS_OF}").json()
    assert body["level"] == "rep"
    dist = body["attainment"]["distribution"]
    # Reps at 6,000/12,000, 6,000/12,000, 9,000/12,000 and 1,500/12,000.
    assert dist["count"] == 4
    assert dist["max_min"] == pytest.approx(6.0)
    assert sum(body["attainment"]["histogram"]["counts"]) == 4
    assert len(body["balance"]["territories"]) == 4
    assert body["balance"]["metrics"]["accounts"]["cv"] == 0
    mine = client_for(sales.world.manager_west).get(f"/api/v1/fairness/?as_of={AS_OF}").json()
    assert mine["attainment"]["distribution"]["count"] == 2
    assert {w["rep"]["name"] for w in mine["workload"]} == {"Rep W-T1", "Rep W-T2"}


def _warning(plan, territory=None, rep=None, key="k"):
    from django.utils import timezone

    now = timezone.now()
    return WarningSign.objects.create(
        kind="over_capacity", key=key, plan=plan, territory=territory, rep=rep, title=key,
        first_seen=now, last_seen=now,
    )  # fmt: skip


def test_warnings_list_is_scoped(sales):
    world = sales.world
    _warning(world.plan, world.leaves["E-T1"], key="east")
    _warning(world.plan, world.leaves["W-T1"], key="west")
    _warning(world.plan, world.leaves["E-T1"], rep=world.reps["E-T2"], key="colleague")
    _warning(world.plan, None, key="plan-wide")

    def titles(user):
        return {w["title"] for w in client_for(user).get("/api/v1/warnings/").json()["results"]}

    assert titles(world.planner) == {"east", "west", "colleague", "plan-wide"}
    assert titles(world.manager_west) == {"west"}
    assert titles(world.rep_user) == {"east"}
    assert titles(world.outsider) == set()


def test_check_now_is_for_planners_and_answers_202(sales):
    assert client_for(sales.world.manager_west).post("/api/v1/warnings/check/").status_code == 403
    response = client_for(sales.world.planner).post("/api/v1/warnings/check/")
    assert response.status_code == 202
    check = WarningCheck.objects.get(pk=response.json()["id"])
    assert check.status == JobStatus.QUEUED
    # A second click follows the same run.
    assert client_for(sales.world.planner).post("/api/v1/warnings/check/").json()["id"] == check.pk
    body = client_for(sales.world.planner).get(f"/api/v1/warnings/checks/{check.pk}/").json()
    assert body["status"] == "queued" and body["progress"] == 0
    assert client_for(sales.world.manager_west).get(f"/api/v1/warnings/checks/{check.pk}/").status_code == 404

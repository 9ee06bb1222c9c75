"""accounts/bulk/ and reps/bulk/: JSON and CSV bodies, per-row outcomes, atomic, limits, idempotence."""

from __future__ import annotations

import json

import pytest

from accounts.models import Account, Rep

from .api_fixtures import *  # noqa: F403  (fixtures live_world, client_as)

pytestmark = pytest.mark.django_db

URL = "/api/v1/accounts/bulk/"


@pytest.fixture
def writer(live_world, client_as):
    return client_as(live_world.integration, scopes=["read", "write"])


def rows(n, start=0, **extra):
    return [
        {"external_id": f"B-{i}", "name": f"Bulk {i}", "revenue": i * 10, **extra}
        for i in range(start, start + n)
    ]


def test_same_body_twice_is_all_unchanged(writer):
    first = writer.post(URL, rows(50), format="json")
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["totals"] == {"created": 50, "updated": 0, "unchanged": 0, "error": 0}
    assert body["committed"] is True
    row = body["rows"][0]
    assert set(row) >= {"row", "external_id", "status", "id", "errors"}
    assert row["row"] == 1 and row["status"] == "created"
    assert Account.objects.get(external_id="B-0").pk == row["id"]
    second = writer.post(URL, {"rows": rows(50)}, format="json").json()
    assert second["totals"] == {"created": 0, "updated": 0, "unchanged": 50, "error": 0}
    assert [r["id"] for r in second["rows"]] == [r["id"] for r in body["rows"]]
    changed = rows(50)
    changed[3]["name"] = "Changed"
    third = writer.post(URL, changed, format="json").json()
    assert third["totals"] == {"created": 0, "updated": 1, "unchanged": 49, "error": 0}


def test_partial_by_default_atomic_on_request(writer):
    batch = rows(3) + [{"external_id": "B-bad", "name": "Bad", "employees": "many", "segment": "huge"}]
    response = writer.post(URL + "?atomic=true", batch, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "nothing was written" in body["message"]
    assert body["errors"] == {"row 4": [
        "segment: 'huge' is not a segment; use one of: smb, mid_market, enterprise.",
        "employees: 'many' is not a number.",
    ]} or set(body["errors"]) == {"row 4"}  # fmt: skip
    assert body["rows"][3]["status"] == "error" and set(body["rows"][3]["errors"]) == {"employees", "segment"}
    assert body["committed"] is False
    assert not Account.objects.filter(external_id__startswith="B-").exists()
    response = writer.post(URL, batch, format="json")
    assert response.status_code == 200
    assert response.json()["totals"] == {"created": 3, "updated": 0, "unchanged": 0, "error": 1}
    assert Account.objects.filter(external_id__startswith="B-").count() == 3


def test_csv_body(writer):
    csv = "External ID,Account Name,Zip,Industry,Tier\nC-1,Acme,94103,Retail,gold\nC-2,,02134,Health,\n"
    response = writer.post(URL, csv.encode(), content_type="text/csv")
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["row"] for r in body["rows"]] == [2, 3]  # file rows, header = 1
    assert body["rows"][0]["status"] == "created"
    assert body["rows"][1]["status"] == "error" and "name" in body["rows"][1]["errors"]
    assert Account.objects.get(external_id="C-1").attributes == {"Tier": "gold"}
    assert any("Custom fields" in note for note in body["notes"])
    response = writer.post(URL, b"just,a,header\n", content_type="text/csv")
    assert response.status_code == 400 and response.json()["message"]


def test_limits_and_bad_bodies(writer):
    response = writer.post(URL, [{"external_id": str(i)} for i in range(10_001)], format="json")
    assert response.status_code == 400
    assert "10,000" in response.json()["message"]
    for bad in ({"nope": 1}, "text", 5, [], {"rows": "x"}):
        response = writer.post(URL, bad, format="json")
        assert response.status_code == 400, bad
        assert set(response.json()) >= {"message", "errors"}
    response = writer.post(URL, b"{not json", content_type="application/json")
    assert response.status_code == 400
    response = writer.post(URL, b"<xml/>", content_type="application/xml")
    assert response.status_code == 415
    assert writer.post(URL + "?atomic=maybe", rows(1), format="json").status_code == 400


@pytest.mark.parametrize(
    "row",
    [
        [1, 2],
        "text",
        None,
        {"external_id": {"x": 1}, "name": "n"},
        {"external_id": "E", "name": ["a"]},
        {"external_id": "E", "name": "a\x00b"},
        {"external_id": "E", "name": "n", "attributes": {"deep": {"x": "a\x00"}}},
        {"external_id": "E", "name": "n", "attributes": {"x": float("nan")}},
        {"external_id": "E", "name": "n", "attributes": [1]},
        {"external_id": "E", "name": "n", "latitude": 1e400, "longitude": 3},
        {"external_id": "E", "name": "n", "latitude": "north", "longitude": 3},
        {"external_id": "E", "name": "n", "revenue": 10**30},
        {"external_id": "E", "name": "n", "revenue": "1e999999"},
        {"external_id": "E", "name": "n", "workload_hours": "-0.001e-50"},
        {"external_id": "E", "name": "n", "employees": -1},
        {"external_id": "E", "name": "n", "parent_external_id": "E"},
        {"external_id": "E", "name": "n", "parent_external_id": "missing"},
        {"external_id": "E" * 65, "name": "n"},
        {"external_id": "E", "name": "n", "postal_code": "ABCDE"},
    ],
)
def test_any_bad_row_is_an_error_row_not_a_500(writer, row):
    body = json.dumps([row], allow_nan=True)
    response = writer.post(URL, body, content_type="application/json")
    if response.status_code == 400:  # NaN and Infinity are not JSON: the parser refuses the body
        assert "JSON" in response.json()["message"]
    else:
        assert response.status_code == 200, response.content
        assert response.json()["rows"][0]["status"] == "error"
    assert not Account.objects.filter(external_id="E").exists()


def test_parent_in_same_batch_and_loops(writer):
    batch = [
        {"external_id": "KID", "name": "Kid", "parent_external_id": "MOM"},
        {"external_id": "MOM", "name": "Mom"},
    ]
    assert writer.post(URL, batch, format="json").json()["totals"]["created"] == 2
    assert Account.objects.get(external_id="KID").parent.external_id == "MOM"
    loop = [{"external_id": "MOM", "parent_external_id": "KID"}]
    response = writer.post(URL, loop, format="json").json()
    assert response["rows"][0]["status"] == "error" and "loop" in str(response["rows"][0]["errors"])


def test_managers_cannot_bulk(live_world, client_as):
    response = client_as(live_world.manager_west).post(URL, rows(1), format="json")
    assert response.status_code == 403
    response = client_as(live_world.integration, scopes=["read"]).post(URL, rows(1), format="json")
    assert response.status_code == 403 and "write" in response.json()["message"]


def test_reps_bulk_same_shape(writer):
    url = "/api/v1/reps/bulk/"
    batch = [
        {"external_id": "R-1", "name": "Boss"},
        {
            "external_id": "R-2",
            "name": "Seller",
            "manager_external_id": "R-1",
            "specialties": "Retail;Health",
        },
        {"external_id": "R-3", "name": "Bad", "capacity_fte": "0"},
    ]
    body = writer.post(url, batch, format="json").json()
    assert body["totals"] == {"created": 2, "updated": 0, "unchanged": 0, "error": 1}
    assert Rep.objects.get(external_id="R-2").specialties == ["Retail", "Health"]
    again = writer.post(url, batch[:2], format="json").json()
    assert again["totals"]["unchanged"] == 2
    csv = b"Rep ID,Full Name,Manager ID\nR-4,New,R-1\n"
    response = writer.post(url, csv, content_type="text/csv")
    assert response.json()["totals"]["created"] == 1


def test_dry_run_writes_nothing(writer):
    body = writer.post(URL + "?dry_run=true", rows(2), format="json").json()
    assert body["committed"] is False and body["totals"]["created"] == 2
    assert not Account.objects.filter(external_id__startswith="B-").exists()


def test_bodies_above_django_upload_limit_are_accepted(writer, settings):
    # 10,000 real rows are several MB: more than Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), which
    # is made small here to keep the test quick.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    batch = [{"external_id": f"L-{i}", "name": "N" * 250} for i in range(500)]
    body = json.dumps(batch).encode()
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = writer.post(URL + "?dry_run=true", body, content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["totals"]["created"] == 500

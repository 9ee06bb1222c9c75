"""Values PostgreSQL refuses, or of the wrong type, are the client's error: a 400 naming them, not a 500."""

from __future__ import annotations

from rest_framework.test import APIClient


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_nul_character_in_a_search_is_a_400(world):
    response = client_for(world.planner).get("/api/v1/reps/", {"external_id": "A\x00B"})
    assert response.status_code == 400, response.content
    assert "cannot be stored or searched" in response.json()["message"]


def test_nul_character_in_a_new_account_is_a_400(world):
    response = client_for(world.planner).post(
        "/api/v1/accounts/", {"external_id": "X\x00", "name": "Nul Inc."}, format="json"
    )
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"message", "errors"}


def test_booking_row_with_a_list_for_an_external_id_is_a_row_error(world):
    account = world.accounts["W-T1"][0]
    rows = [
        {
            "external_id": "B-LIST",
            "account_external_id": account.external_id,
            "rep_external_id": ["x"],
            "amount": "10",
            "booked_on": "2026-03-04",
            "component": "new",
        },
        {
            "external_id": "B-LIST-2",
            "account_external_id": {"id": 1},
            "amount": "10",
            "booked_on": "2026-03-04",
            "component": "new",
        },
    ]
    response = client_for(world.integration).post("/api/v1/bookings/bulk/", rows, format="json")
    assert response.status_code in (200, 400), response.content
    body = response.json()
    assert body["totals"]["error"] == 2
    assert "rep_external_id" in body["rows"][0]["errors"]
    assert "account_external_id" in body["rows"][1]["errors"]

"""accounts/{id}/ownership/ (on a date, or the timeline across published plans) and changes/, the
cursor-paginated feed of ownership changes a CRM follows to keep its owner fields in sync."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from territories import services
from territories.choices import ChangeKind, PlanStatus
from territories.models import AccountAssignment, Change, Plan, TerritoryMembership

from ..factories import RepFactory, add_member

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def publish(plan, on: dt.date) -> Plan:
    plan = services.plan_transition(plan=plan, status=PlanStatus.IN_REVIEW)
    plan = services.plan_transition(plan=plan, status=PlanStatus.APPROVED)
    return services.plan_publish(plan=plan, effective_from=on)


def assert_error_shape(response, status_code, field=None):
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"message", "errors"} and body["message"]
    if field is not None:
        assert field in body["errors"], body


@pytest.fixture
def history(world):
    """Q = the world plan, active from 2026-01-01; then account a1 moves E-T1 → W-T1 in Q; then the
    scenario P (cloned from Q) moves a2 E-T1 → E-T2 and gives W-T2 a new primary rep, and is
    published from 2026-07-01 (ending Q); then a3 moves W-T1 → W-T2 in P."""
    q = publish(world.plan, dt.date(2026, 1, 1))
    a1, a2 = world.accounts["E-T1"]
    a3 = world.accounts["W-T1"][0]
    services.account_assignments_move(plan=q, account_ids=[a1.pk], territory=world.leaves["W-T1"])
    p = services.plan_clone(plan=q, name="FY26 H2")
    services.account_assignments_move(plan=p, account_ids=[a2.pk], territory=p.territories.get(code="E-T2"))
    w2 = p.territories.get(code="W-T2")
    TerritoryMembership.objects.filter(territory=w2).delete()
    add_member(w2, RepFactory(name="New W2 rep"))
    p = publish(p, dt.date(2026, 7, 1))
    services.account_assignments_move(plan=p, account_ids=[a3.pk], territory=w2)
    q.refresh_from_db()
    return world, q, p, (a1, a2, a3)


def ownership(client, account, at=None):
    suffix = f"?at={at}" if at else ""
    return client.get(f"/api/v1/accounts/{account.pk}/ownership/{suffix}")


def test_ownership_on_a_date_undoes_later_moves(history):
    world, q, p, (a1, a2, a3) = history
    client = client_for(world.integration)
    body = ownership(client, a1, "2026-03-01").json()
    # a1 moved in Q only today (after 2026-03-01): on that date it was still East 1's.
    assert body["plan"]["id"] == q.pk and body["territory"]["code"] == "E-T1"
    assert body["path"] == ["East", "East D1", "East 1"] and body["reps"][0]["name"] == "Rep E-T1"
    assert body["explanation"]
    body = ownership(client, a3, "2026-08-01").json()
    assert body["plan"]["id"] == p.pk and body["territory"]["code"] == "W-T1"
    body = ownership(client, a2, "2026-08-01").json()
    assert (
        body["territory"]["code"] == "E-T2" and body["step"] == "manual" and "by hand" in body["explanation"]
    )
    today = dt.date.today().isoformat()
    body = ownership(client, a3, today).json()
    assert body["territory"]["code"] == "W-T2" and body["reps"][0]["name"] == "New W2 rep"
    body = ownership(client, a1, "2025-06-01").json()
    assert body["plan"] is None and body["territory"] is None and body["step"] == "no_plan"
    assert_error_shape(ownership(client, a1, "someday"), 400, "at")
    assert ownership(client, a1, "9999-12-31").json()["plan"]["id"] == p.pk


def test_ownership_timeline_across_plans(history):
    world, q, p, (a1, a2, a3) = history
    client = client_for(world.planner)
    body = ownership(client, a1).json()
    assert body["account"]["external_id"] == a1.external_id
    periods = [(e["from"], e["to"], e["plan"]["id"], e["territory"]["code"]) for e in body["timeline"]]
    # The move in Q was made after Q's period ended (P was published for a past date): Q's period
    # shows the owner it had then, P's period the owner it was published with.
    assert periods == [("2026-01-01", "2026-07-01", q.pk, "E-T1"), ("2026-07-01", None, p.pk, "W-T1")]
    periods = [(e["from"], e["to"], e["territory"]["code"]) for e in ownership(client, a3).json()["timeline"]]
    today = dt.date.today().isoformat()
    assert periods == [
        ("2026-01-01", "2026-07-01", "W-T1"),
        ("2026-07-01", today, "W-T1"),
        (today, None, "W-T2"),
    ]


def test_ownership_is_scoped(history):
    world, q, p, (a1, a2, a3) = history
    east_account = world.accounts["E-T2"][0]
    assert ownership(client_for(world.manager_west), east_account).status_code == 404
    assert ownership(client_for(world.manager_west), world.accounts["W-T2"][0]).status_code == 200
    assert ownership(client_for(world.outsider), a1).status_code == 404
    assert ownership(client_for(world.planner), type(a1)(pk=999999)).status_code == 404
    assert APIClient().get(f"/api/v1/accounts/{a1.pk}/ownership/").status_code == 401


# ------------------------------------------------------------------------------------------------
# changes/


def read_feed(client, limit=100, cursor=None):
    events, pages = [], 0
    while True:
        params = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/api/v1/changes/", params)
        assert response.status_code == 200, response.json()
        body = response.json()
        events += body["results"]
        cursor = body["next_cursor"]
        pages += 1
        if not body["has_more"]:
            return events, cursor, pages


def summary(events):
    return [
        (
            e["kind"],
            e["account"]["id"],
            e["old"]["territory"] and e["old"]["territory"]["code"],
            e["new"]["territory"] and e["new"]["territory"]["code"],
            e["plan"]["id"],
        )
        for e in events
    ]


def test_feed_lists_publications_and_moves_in_order(history):
    world, q, p, (a1, a2, a3) = history
    events, _, _ = read_feed(client_for(world.integration))
    all_accounts = sorted(a.pk for accounts in world.accounts.values() for a in accounts)
    first_publication = [e for e in summary(events) if e[0] == "published" and e[4] == q.pk]
    assert [e[1] for e in first_publication] == all_accounts and all(e[2] is None for e in first_publication)
    rest = summary(events)[len(all_accounts) :]
    w2_accounts = sorted(a.pk for a in world.accounts["W-T2"])
    assert rest == [
        ("moved", a1.pk, "E-T1", "W-T1", q.pk),
        # Publishing P: a2 changes territory; W-T2's accounts change primary rep.
        *sorted(
            [("published", a2.pk, "E-T1", "E-T2", p.pk)]
            + [("published", pk, "W-T2", "W-T2", p.pk) for pk in w2_accounts],
            key=lambda e: e[1],
        ),
        ("moved", a3.pk, "W-T1", "W-T2", p.pk),
    ]
    published = next(e for e in events if e["plan"]["id"] == p.pk and e["account"]["id"] == a2.pk)
    assert published["effective_date"] == "2026-07-01" and published["plan"]["name"] == "FY26 H2"
    last = events[-1]
    assert last["new"]["reps"][0]["name"] == "New W2 rep" and last["new"]["path"] == [
        "West",
        "West D1",
        "West 2",
    ]
    assert last["effective_date"] == dt.date.today().isoformat() and last["batch"]


def test_feed_pages_are_stable_and_resume_from_the_cursor(history, django_assert_max_num_queries):
    world, q, p, (a1, a2, a3) = history
    client = client_for(world.integration)
    whole, cursor, _ = read_feed(client, limit=100)
    paged, cursor_paged, pages = read_feed(client, limit=3)
    assert pages > 3 and [e["id"] for e in paged] == [e["id"] for e in whole]
    assert len({e["id"] for e in whole}) == len(whole)
    # Nothing new: the last cursor gives an empty page and keeps the cursor.
    body = client.get("/api/v1/changes/", {"cursor": cursor}).json()
    assert body == {"results": [], "next_cursor": cursor, "has_more": False}
    # A new move appears after the cursor; a move in a draft scenario does not.
    draft = services.plan_clone(plan=p, name="Draft")
    services.account_assignments_move(
        plan=draft, account_ids=[a1.pk], territory=draft.territories.get(code="E-T2")
    )
    services.account_assignments_move(plan=p, account_ids=[a1.pk], territory=p.territories.get(code="E-T2"))
    with django_assert_max_num_queries(12):
        body = client.get("/api/v1/changes/", {"cursor": cursor}).json()
    assert summary(body["results"]) == [("moved", a1.pk, "W-T1", "E-T2", p.pk)]
    # Resuming from the middle of a publication's events continues within it.
    middle = paged[3]["id"]
    after = client.get("/api/v1/changes/", {"cursor": middle, "limit": 1000}).json()["results"]
    assert [e["id"] for e in after] == [e["id"] for e in whole[4:]] + [body["results"][0]["id"]]


def test_feed_validates_cursor_and_limit(history):
    world = history[0]
    client = client_for(world.integration)
    assert_error_shape(client.get("/api/v1/changes/", {"cursor": "garbage!"}), 400, "cursor")
    assert_error_shape(client.get("/api/v1/changes/", {"cursor": "WzEsMiwzXQ"}), 400, "cursor")
    assert_error_shape(client.get("/api/v1/changes/", {"limit": 0}), 400, "limit")
    assert_error_shape(client.get("/api/v1/changes/", {"limit": 5000}), 400, "limit")


def test_feed_is_scoped_to_the_managers_territories(history):
    world, q, p, (a1, a2, a3) = history
    events, _, _ = read_feed(client_for(world.manager_west))
    west_codes = {"W-T1", "W-T2"}
    assert events and all(
        (e["old"]["territory"] and e["old"]["territory"]["code"] in west_codes)
        or (e["new"]["territory"] and e["new"]["territory"]["code"] in west_codes)
        for e in events
    )
    assert a2.pk not in {e["account"]["id"] for e in events}
    assert read_feed(client_for(world.outsider))[0] == []


def test_feed_announces_new_primary_reps_for_the_territorys_accounts(history, django_assert_max_num_queries):
    world, q, p, (a1, a2, a3) = history
    client = client_for(world.integration)
    _, cursor, _ = read_feed(client)
    w1 = p.territories.get(code="W-T1")
    newcomer = RepFactory(name="Newcomer", external_id="REP-NEW")
    old_rep = TerritoryMembership.objects.get(territory=w1).rep

    def members_changed(before, after):
        """What territory_members_set records (active plans are edited in the admin today)."""
        Change.objects.create(
            plan=p,
            kind=ChangeKind.MEMBERSHIP_CHANGED,
            territory_to=w1,
            plan_version=p.version,
            payload={"code": "W-T1", "before": before, "after": after},
        )

    TerritoryMembership.objects.filter(territory=w1).update(role="overlay")
    add_member(w1, newcomer)
    old = {"rep": old_rep.pk, "name": old_rep.name, "role": "primary", "share": "1"}
    members_changed(
        [old], [{**old, "role": "overlay"}, {"rep": newcomer.pk, "name": "Newcomer", "role": "primary"}]
    )
    # Only a support rep added: no owner change, no events.
    members_changed([], [{"rep": RepFactory().pk, "name": "Helper", "role": "support"}])
    with django_assert_max_num_queries(16):
        body = client.get("/api/v1/changes/", {"cursor": cursor}).json()
    owned = sorted(
        AccountAssignment.objects.filter(plan=p, territory=w1).values_list("account_id", flat=True)
    )
    assert owned and [e["kind"] for e in body["results"]] == ["reps_changed"] * len(owned)
    assert [e["account"]["id"] for e in body["results"]] == owned
    event = body["results"][0]
    assert event["old"]["territory"]["code"] == event["new"]["territory"]["code"] == "W-T1"
    assert [r["external_id"] for r in event["old"]["reps"]] == [old_rep.external_id]
    assert [(r["external_id"], r["role"]) for r in event["new"]["reps"]] == [
        ("REP-NEW", "primary"),
        (old_rep.external_id, "overlay"),
    ]
    # Paging through the expansion one event at a time gives the same events.
    ids, next_cursor = [], cursor
    while True:
        page = client.get("/api/v1/changes/", {"cursor": next_cursor, "limit": 1}).json()
        ids += [e["id"] for e in page["results"]]
        next_cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert ids == [e["id"] for e in body["results"]]
    # An admin edit (no before/after recorded) announces today's reps.
    Change.objects.create(
        plan=p,
        kind=ChangeKind.MEMBERSHIP_CHANGED,
        territory_to=w1,
        plan_version=p.version,
        payload={"via": "admin"},
    )
    body = client.get("/api/v1/changes/", {"cursor": next_cursor}).json()
    assert len(body["results"]) == len(owned)
    assert body["results"][0]["new"]["reps"][0]["external_id"] == "REP-NEW"

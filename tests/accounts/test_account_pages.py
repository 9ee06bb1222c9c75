"""The account and rep pages: search, filters and pagination on the server, detail pages with the
owner in the plan in effect, the resolver's explanation and the ownership history, all scoped by
role (a manager their subtree, a rep their own territory, an outsider nothing)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.gis.geos import Point
from django.urls import reverse
from django.utils import timezone

from accounts.choices import AccountStatus, Segment
from territories import services
from territories.choices import AssignmentSource, PlanStatus
from territories.models import AccountAssignment, Plan

from ..factories import AccountFactory, GeoUnitFactory, assign_unit, square

pytestmark = pytest.mark.django_db


@pytest.fixture
def active(world):
    """The world plan, published and in effect since the start of the year."""
    Plan.objects.filter(pk=world.plan.pk).update(
        status=PlanStatus.ACTIVE,
        effective_from=dt.date(timezone.localdate().year, 1, 1),
        published_at=timezone.now(),
    )
    world.plan.refresh_from_db()
    return world


def names(response) -> set[str]:
    return {account.name for account in response.context["page"].object_list}


# --- account list -------------------------------------------------------------------------------


def test_planner_sees_every_account_with_its_owner(client, active):
    client.force_login(active.planner)
    response = client.get(reverse("account-list"))
    assert response.status_code == 200
    assert response.context["page"].paginator.count == 8
    html = response.content.decode()
    assert "W-T1 West 1" in html and "E-T2 East 2" in html


def test_search_by_name_external_id_and_postal_code(client, active):
    target = active.accounts["W-T2"][0]
    AccountFactory(name="Nobody owns me", postal_code="80202", external_id="CRM-LONELY")
    target.postal_code = "94105"
    target.save()
    client.force_login(active.planner)
    assert names(client.get(reverse("account-list"), {"q": "W-T2 account 1"})) == {target.name}
    assert names(client.get(reverse("account-list"), {"q": target.external_id})) == {target.name}
    assert names(client.get(reverse("account-list"), {"q": "941"})) == {target.name}
    response = client.get(reverse("account-list"), {"q": "crm-lonely"})
    assert names(response) == {"Nobody owns me"} and "unassigned" in response.content.decode()
    response = client.get(reverse("account-list"), {"q": "no such account"})
    assert "No account matches these filters." in response.content.decode()


def test_filters_by_segment_industry_status_and_territory(client, active):
    first, second = active.accounts["E-T1"]
    first.segment, first.industry, first.status = Segment.ENTERPRISE, "Healthcare", AccountStatus.PROSPECT
    first.save()
    client.force_login(active.planner)
    assert names(client.get(reverse("account-list"), {"segment": "enterprise"})) == {first.name}
    assert names(client.get(reverse("account-list"), {"industry": "healthcare"})) == {first.name}
    assert names(client.get(reverse("account-list"), {"status": "prospect"})) == {first.name}
    east = {a.name for code in ("E-T1", "E-T2") for a in active.accounts[code]}
    assert names(client.get(reverse("account-list"), {"territory": active.east.pk})) == east
    leaf = client.get(reverse("account-list"), {"territory": active.leaves["E-T1"].pk, "segment": "smb"})
    assert names(leaf) == {second.name}
    # Unknown filter values are ignored rather than failing the page.
    assert client.get(reverse("account-list"), {"segment": "galactic", "territory": "x"}).status_code == 200


def test_account_list_is_paginated_on_the_server(client, active):
    for n in range(60):
        AccountFactory(name=f"Bulk {n:02d}")
    client.force_login(active.planner)
    first = client.get(reverse("account-list"), {"q": "Bulk"})
    assert first.context["page"].paginator.num_pages == 2 and len(first.context["page"].object_list) == 50
    assert "page=2" in first.content.decode() and "q=Bulk" in first.content.decode()
    second = client.get(reverse("account-list"), {"q": "Bulk", "page": 2})
    assert len(second.context["page"].object_list) == 10
    assert names(first).isdisjoint(names(second))
    assert client.get(reverse("account-list"), {"page": "999"}).status_code == 200  # last page


def test_account_list_is_scoped(client, active):
    client.force_login(active.manager_west)
    west = {a.name for code in ("W-T1", "W-T2") for a in active.accounts[code]}
    response = client.get(reverse("account-list"))
    assert names(response) == west
    # A territory outside the subtree is not offered and not honoured.
    assert active.east.pk not in {t.pk for t in response.context["territory_options"]}
    assert names(client.get(reverse("account-list"), {"territory": active.east.pk})) == west
    client.force_login(active.rep_user)
    assert names(client.get(reverse("account-list"))) == {a.name for a in active.accounts["E-T1"]}
    client.force_login(active.outsider)
    response = client.get(reverse("account-list"))
    assert names(response) == set() and "No accounts to show" in response.content.decode()


def test_account_list_query_count_is_flat(client, active, django_assert_max_num_queries):
    for n in range(40):
        AccountFactory(name=f"More {n}")
    client.force_login(active.planner)
    with django_assert_max_num_queries(10):
        client.get(reverse("account-list"))


# --- account detail -----------------------------------------------------------------------------


def test_account_detail_shows_owner_reps_why_and_history(client, active):
    account = active.accounts["W-T1"][0]
    unit = GeoUnitFactory(name="Denver", code="08031", geom=square(0, 0))
    assign_unit(active.plan, unit, active.leaves["W-T1"])
    client.force_login(active.planner)
    response = client.get(reverse("account-detail", args=[account.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "W-T1 West 1" in html and "Rep W-T1" in html
    # The world's accounts sit at (0.5, 0.5), inside the unit: the resolver's geography step.
    assert "Located in Denver (county 08031), which belongs to W-T1 West 1." in html
    assert 'id="ownership"' in html and active.plan.name in html
    assert '"lon": 0.5' in html  # the small map's point


def test_account_detail_lists_moves(client, active):
    account = active.accounts["W-T1"][0]
    services.account_assignments_move(
        plan=active.plan,
        account_ids=[account.pk],
        territory=active.leaves["W-T2"],
        actor=active.planner,
        lock=True,
    )
    client.force_login(active.planner)
    html = client.get(reverse("account-detail", args=[account.pk])).content.decode()
    assert "Moved W-T1 → W-T2" in html and "planner" in html
    assert "Locked to W-T2 West 2" in html


def test_account_detail_flags_an_owner_the_rules_would_change(client, active):
    account = active.accounts["E-T1"][0]  # assigned by hand, no unit, no rule
    client.force_login(active.planner)
    html = client.get(reverse("account-detail", args=[account.pk])).content.decode()
    assert "Unassigned: No rule matches it" in html
    assert "rebuilding the plan would leave it unassigned" in html


def test_account_detail_without_a_plan_in_effect(client, world):
    account = world.accounts["E-T1"][0]
    account.location = None
    account.save()
    client.force_login(world.planner)
    html = client.get(reverse("account-detail", args=[account.pk])).content.decode()
    assert "No plan is in effect today" in html and "This account has no location." in html


def test_account_detail_is_scoped(client, active):
    west_account = active.accounts["W-T1"][0]
    east_account = active.accounts["E-T2"][0]
    client.force_login(active.manager_west)
    assert client.get(reverse("account-detail", args=[west_account.pk])).status_code == 200
    assert client.get(reverse("account-detail", args=[east_account.pk])).status_code == 404
    client.force_login(active.rep_user)
    assert client.get(reverse("account-detail", args=[east_account.pk])).status_code == 404
    assert client.get(reverse("account-detail", args=[active.accounts["E-T1"][0].pk])).status_code == 200
    client.force_login(active.outsider)
    assert client.get(reverse("account-detail", args=[west_account.pk])).status_code == 404
    assert client.get(reverse("account-detail", args=[999999])).status_code == 404


def test_history_lists_the_owner_in_each_published_plan(client, active):
    account = active.accounts["W-T1"][0]
    successor = services.plan_clone(plan=active.plan, name="Next year")
    services.account_assignments_move(
        plan=successor, account_ids=[account.pk], territory=successor.territories.get(code="W-T2")
    )
    successor = services.plan_transition(plan=successor, status=PlanStatus.IN_REVIEW)
    successor = services.plan_transition(plan=successor, status=PlanStatus.APPROVED)
    services.plan_publish(plan=successor, effective_from=timezone.localdate() + dt.timedelta(days=30))
    client.force_login(active.planner)
    response = client.get(reverse("account-detail", args=[account.pk]))
    rows = [(row.plan.name, row.territory.code) for row in response.context["published"]]
    assert rows == [("Next year", "W-T2"), ("World plan", "W-T1")]


# --- reps ---------------------------------------------------------------------------------------


def test_rep_list_shows_territories_and_book(client, active):
    client.force_login(active.planner)
    response = client.get(reverse("rep-list"))
    html = response.content.decode()
    assert response.status_code == 200 and len(response.context["rows"]) == 4
    row = next(r for r in response.context["rows"] if r["rep"].name == "Rep W-T1")
    assert [m.territory.code for m in row["memberships"]] == ["W-T1"]
    assert row["figures"]["accounts"] == 2 and float(row["figures"]["revenue"]) == 2000
    assert "Rep E-T2" in html


def test_rep_search_and_filters(client, active):
    rep = active.reps["E-T2"]
    rep.home_postal_code, rep.active = "10001", False
    rep.save()
    client.force_login(active.planner)

    def rep_names(params):
        return {row["rep"].name for row in client.get(reverse("rep-list"), params).context["rows"]}

    assert rep_names({"q": "REP-E-T2"}) == {"Rep E-T2"}
    assert rep_names({"q": "100"}) == {"Rep E-T2"}
    assert rep_names({"active": "no"}) == {"Rep E-T2"}
    assert rep_names({"active": "yes", "territory": active.east.pk}) == {"Rep E-T1"}


def test_rep_pages_are_scoped(client, active):
    client.force_login(active.manager_west)
    listed = {row["rep"].name for row in client.get(reverse("rep-list")).context["rows"]}
    assert listed == {"Rep W-T1", "Rep W-T2"}
    assert client.get(reverse("rep-detail", args=[active.reps["W-T1"].pk])).status_code == 200
    assert client.get(reverse("rep-detail", args=[active.reps["E-T1"].pk])).status_code == 404
    client.force_login(active.rep_user)
    assert {row["rep"].name for row in client.get(reverse("rep-list")).context["rows"]} == {"Rep E-T1"}
    assert client.get(reverse("rep-detail", args=[active.reps["W-T1"].pk])).status_code == 404
    client.force_login(active.outsider)
    assert client.get(reverse("rep-list")).context["rows"] == []
    assert client.get(reverse("rep-detail", args=[active.reps["E-T1"].pk])).status_code == 404


def test_rep_detail_shows_territories_accounts_and_home(client, active):
    rep = active.reps["E-T1"]
    rep.home_location = Point(-104.99, 39.74, srid=4326)
    rep.save()
    assign_unit(active.plan, GeoUnitFactory(geom=square(-105.5, 39.5)), active.leaves["E-T1"])
    AccountAssignment.objects.create(
        plan=active.plan,
        account=AccountFactory(name="Extra"),
        territory=active.leaves["E-T1"],
        source=AssignmentSource.MANUAL,
    )
    client.force_login(active.rep_user)
    response = client.get(reverse("rep-detail", args=[rep.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["totals"]["accounts"] == 3
    assert "E-T1 East 1" in html and '"lon": -104.99' in html
    outline = response.context["map_config"]["outlines"]["features"]
    assert [f["properties"]["code"] for f in outline] == ["E-T1"]


def test_directory_pages_require_login(client, world):
    for url in (reverse("account-list"), reverse("rep-list")):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))

"""The plan pages: the list with headline figures and its create/clone/archive actions, a plan's
detail, the compare page and the outline GeoJSON behind the maps, each scoped by role."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from territories import comparison, services
from territories.choices import PlanStatus
from territories.models import AccountAssignment, Plan

from ..factories import GeoUnitFactory, assign_unit, square

pytestmark = pytest.mark.django_db


def in_review(plan: Plan) -> Plan:
    Plan.objects.filter(pk=plan.pk).update(status=PlanStatus.IN_REVIEW)
    plan.refresh_from_db()
    return plan


def scenario_with_one_move(world, name="Scenario B"):
    """A clone of the world plan in which the first W-T1 account moved to W-T2."""
    clone = services.plan_clone(plan=world.plan, name=name, actor=world.planner)
    target = clone.territories.get(code="W-T2")
    moved = world.accounts["W-T1"][0]
    services.account_assignments_move(
        plan=clone, account_ids=[moved.pk], territory=target, actor=world.planner
    )
    clone.refresh_from_db()
    return clone, moved


# --- plan list ----------------------------------------------------------------------------------


def test_plan_list_shows_headline_figures_and_links(client, world):
    client.force_login(world.planner)
    html = client.get(reverse("home")).content.decode()
    assert "World plan" in html
    assert '<td class="num">4</td>' in html  # leaf territories
    assert '<td class="num">8</td>' in html  # assigned accounts
    assert '<td class="num">0</td>' in html  # no unassigned account
    assert f'href="/planner/{world.plan.pk}/"' in html
    assert reverse("plan-detail", args=[world.plan.pk]) in html
    assert reverse("plan-review", args=[world.plan.pk]) in html
    assert "Create plan" in html and "Clone" in html and "Archive" in html


def test_worst_deviation_follows_rep_capacity(world):
    """Two accounts per leaf and equal capacity: on target. Doubling one leaf's rep capacity gives it
    a target of 8 × 2/5 = 3.2 accounts (it has 2: −37.5%) and the others 1.6 (they have 2: +25%)."""
    figures = comparison.plan_figures(user=world.planner, plans=[world.plan])[world.plan.pk]
    assert figures.worst_deviation["value"] == pytest.approx(0)
    assert figures.outside_tolerance == 0
    world.reps["E-T1"].capacity_fte = 2
    world.reps["E-T1"].save()
    figures = comparison.plan_figures(user=world.planner, plans=[world.plan])[world.plan.pk]
    worst = figures.worst_deviation
    assert worst["value"] == pytest.approx(-0.375) and worst["code"] == "E-T1"
    assert figures.outside_tolerance == 4  # E-T1 is 37.5% short, the others 25% over
    by_code = {t.code: t for t in figures.territories}
    assert by_code["E-T2"].deviation["revenue"] == pytest.approx(0.25)
    assert by_code["E"].metrics["accounts"] == 4  # parents sum their children
    assert figures.unassigned["accounts"] == 0


def test_manager_figures_cover_their_subtree_only(client, world):
    in_review(world.plan)
    figures = comparison.plan_figures(user=world.manager_west, plans=[world.plan])[world.plan.pk]
    assert {t.code for t in figures.territories} == {"W", "W-D1", "W-T1", "W-T2"}
    assert figures.totals["accounts"] == 4
    assert figures.unassigned is None  # unassigned accounts are in no one's scope
    client.force_login(world.manager_west)
    html = client.get(reverse("home")).content.decode()
    assert "World plan" in html and "Create plan" not in html and "Archive" not in html
    # A rep sees one territory: no peers to measure it against, so no target and no deviation.
    mine = comparison.plan_figures(user=world.rep_user, plans=[world.plan])[world.plan.pk]
    assert [t.code for t in mine.territories] == ["E-T1"]
    assert mine.worst_deviation is None and mine.leaves[0].target is None


def test_planner_creates_clones_and_archives_plans(client, world):
    client.force_login(world.planner)
    response = client.post(reverse("plan-new"), {"name": "  FY27 design "})
    created = Plan.objects.get(name="FY27 design")
    assert response.status_code == 302 and response.url == reverse("plan-detail", args=[created.pk])
    assert created.status == PlanStatus.DRAFT and created.owner == world.planner

    response = client.post(reverse("plan-clone", args=[world.plan.pk]), {"name": "What if"})
    clone = Plan.objects.get(name="What if")
    assert clone.based_on == world.plan and clone.territories.count() == world.plan.territories.count()
    assert AccountAssignment.objects.filter(plan=clone).count() == 8

    response = client.post(reverse("plan-archive", args=[clone.pk]), {"version": clone.version})
    clone.refresh_from_db()
    assert clone.status == PlanStatus.ARCHIVED


def test_archiving_with_a_stale_version_changes_nothing(client, world):
    client.force_login(world.planner)
    response = client.post(reverse("plan-archive", args=[world.plan.pk]), {"version": world.plan.version + 5})
    assert response.status_code == 302
    world.plan.refresh_from_db()
    assert world.plan.status == PlanStatus.DRAFT
    html = client.get(reverse("home")).content.decode()
    assert "changed since you loaded it" in html


def test_create_without_a_name_says_so(client, world):
    client.force_login(world.planner)
    client.post(reverse("plan-new"), {"name": "  "})
    assert "A plan needs a name." in client.get(reverse("home")).content.decode()
    assert Plan.objects.count() == 1


def test_managers_and_reps_cannot_create_clone_or_archive(client, world):
    in_review(world.plan)
    for user in (world.manager_west, world.rep_user):
        client.force_login(user)
        assert client.post(reverse("plan-new"), {"name": "Mine"}).status_code == 403
        assert client.post(reverse("plan-clone", args=[world.plan.pk]), {"name": "Mine"}).status_code == 403
        assert client.post(reverse("plan-archive", args=[world.plan.pk])).status_code == 403
    assert Plan.objects.count() == 1
    world.plan.refresh_from_db()
    assert world.plan.status == PlanStatus.IN_REVIEW


def test_outsider_cannot_clone_a_plan_they_cannot_see(client, world):
    world.outsider.role = "planner"
    world.outsider.save()
    client.force_login(world.outsider)
    # A planner sees every plan; a missing one is a 404, not a 500.
    assert client.post(reverse("plan-clone", args=[99999]), {"name": "x"}).status_code == 404


def test_pages_require_login(client, world):
    for url in (
        reverse("home"),
        reverse("plan-detail", args=[world.plan.pk]),
        reverse("plan-compare"),
        reverse("plan-review", args=[world.plan.pk]),
        reverse("plan-outlines", args=[world.plan.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login")), url


def test_plan_list_query_count_does_not_grow_with_plans(client, world, django_assert_max_num_queries):
    for n in range(6):
        services.plan_clone(plan=world.plan, name=f"Scenario {n}")
    client.force_login(world.planner)
    with django_assert_max_num_queries(10):
        response = client.get(reverse("home"))
    assert response.content.decode().count("Open in planner") == 7


# --- plan detail --------------------------------------------------------------------------------


def test_plan_detail_lists_territories_with_metrics(client, world):
    client.force_login(world.planner)
    response = client.get(reverse("plan-detail", args=[world.plan.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    for code in ("E", "W", "E-T1", "W-T2"):
        assert f"{code} " in html
    assert 'id="small-map-config"' in html and reverse("plan-outlines", args=[world.plan.pk]) in html


def test_plan_detail_is_scoped(client, world):
    client.force_login(world.manager_west)
    # Managers do not see drafts.
    assert client.get(reverse("plan-detail", args=[world.plan.pk])).status_code == 404
    in_review(world.plan)
    html = client.get(reverse("plan-detail", args=[world.plan.pk])).content.decode()
    assert "W-T1 West 1" in html and "E-T1" not in html
    client.force_login(world.rep_user)
    html = client.get(reverse("plan-detail", args=[world.plan.pk])).content.decode()
    assert "E-T1 East 1" in html and "E-T2" not in html and "W-T1" not in html
    client.force_login(world.outsider)
    assert client.get(reverse("plan-detail", args=[world.plan.pk])).status_code == 404


# --- compare ------------------------------------------------------------------------------------


def test_compare_shows_moves_deltas_and_disruption(client, world):
    clone, moved = scenario_with_one_move(world)
    client.force_login(world.planner)
    response = client.get(reverse("plan-compare"), {"a": world.plan.pk, "b": clone.pk})
    assert response.status_code == 200
    diff = response.context["diff"]
    assert diff["accounts_total"] == 8 and diff["moved_total"] == 1
    assert diff["disruption"]["accounts"] == pytest.approx(1 / 8)
    assert diff["disruption"]["revenue"] == pytest.approx(1 / 8)  # every account has revenue 1000
    [row] = diff["moved_accounts"]
    assert row["account_id"] == moved.pk
    assert row["from"]["code"] == "W-T1" and row["to"]["code"] == "W-T2"
    by_code = {t["code"]: t for t in diff["territories"]}
    assert by_code["W-T1"]["metrics"]["accounts"] == {"plan": 1.0, "other": 2.0, "delta": -1.0}
    assert by_code["W-T2"]["metrics"]["revenue"]["delta"] == pytest.approx(1000)
    assert by_code["W"]["metrics"]["accounts"]["delta"] == 0  # moves inside a region cancel out
    html = response.content.decode()
    assert 'id="disruption-accounts">12.5%' in html
    assert moved.name in html and "−1" in html and "+1" in html
    config = json.loads(html.split('id="compare-config" type="application/json">')[1].split("</script>")[0])
    assert config["moved"][0][2] == moved.pk
    assert config["a"]["outlines_url"] == reverse("plan-outlines", args=[world.plan.pk])


def test_compare_counts_new_and_lost_owners(world):
    clone = services.plan_clone(plan=world.plan, name="Fewer")
    lost = world.accounts["E-T2"][1]
    AccountAssignment.objects.filter(plan=clone, account=lost).delete()
    diff = comparison.plan_diff(user=world.planner, plan=clone, other=world.plan)
    assert diff["moved_total"] == 1
    assert diff["moved_accounts"][0]["to"] is None and diff["moved_accounts"][0]["from"]["code"] == "E-T2"


def test_compare_is_scoped_to_the_managers_subtree(client, world):
    clone, _moved = scenario_with_one_move(world)
    east_account = world.accounts["E-T1"][0]
    services.account_assignments_move(
        plan=clone, account_ids=[east_account.pk], territory=clone.territories.get(code="E-T2")
    )
    in_review(world.plan)
    in_review(clone)
    client.force_login(world.manager_west)
    response = client.get(reverse("plan-compare"), {"a": world.plan.pk, "b": clone.pk})
    diff = response.context["diff"]
    assert diff["accounts_total"] == 4 and diff["moved_total"] == 1
    assert {t["code"] for t in diff["territories"]} == {"W", "W-D1", "W-T1", "W-T2"}
    assert east_account.name not in response.content.decode()


def test_compare_refuses_bad_choices(client, world):
    client.force_login(world.planner)
    response = client.get(reverse("plan-compare"), {"a": world.plan.pk, "b": world.plan.pk})
    assert response.status_code == 400 and "two different plans" in response.content.decode()
    response = client.get(reverse("plan-compare"), {"a": "abc", "b": world.plan.pk})
    assert response.status_code == 400 and "is not a plan id" in response.content.decode()
    response = client.get(reverse("plan-compare"), {"a": world.plan.pk})
    assert response.status_code == 400 and "Pick both plans" in response.content.decode()
    assert client.get(reverse("plan-compare"), {"a": world.plan.pk, "b": 99999}).status_code == 404
    response = client.get(reverse("plan-compare"))
    assert response.status_code == 200 and "Choose a baseline A" in response.content.decode()


def test_compare_hides_plans_outside_scope(client, world):
    clone, _moved = scenario_with_one_move(world)
    client.force_login(world.manager_west)  # drafts are not theirs to see
    assert client.get(reverse("plan-compare"), {"a": world.plan.pk, "b": clone.pk}).status_code == 404
    client.force_login(world.outsider)
    in_review(world.plan)
    in_review(clone)
    assert client.get(reverse("plan-compare"), {"a": world.plan.pk, "b": clone.pk}).status_code == 404


def test_two_ticked_plans_open_the_compare_page_older_first(client, world):
    clone, _moved = scenario_with_one_move(world)
    client.force_login(world.planner)
    response = client.get(reverse("plan-compare"), {"pick": [clone.pk, world.plan.pk]})
    assert response.status_code == 302
    assert response.url == f"{reverse('plan-compare')}?a={world.plan.pk}&b={clone.pk}"
    response = client.get(reverse("plan-compare"), {"pick": [clone.pk]})
    assert response.status_code == 400 and "exactly two" in response.content.decode()


# --- outlines -----------------------------------------------------------------------------------


def test_outlines_union_units_and_fall_back_to_account_hulls(client, world):
    # Display outlines simplified one by one no longer meet; the dissolve uses the full boundaries.
    left = GeoUnitFactory(geom=square(0, 0), geom_simplified=square(0, 0, 0.98))
    right = GeoUnitFactory(geom=square(1, 0))
    assign_unit(world.plan, left, world.leaves["W-T1"])
    assign_unit(world.plan, right, world.leaves["W-T1"])
    client.force_login(world.planner)
    response = client.get(reverse("plan-outlines", args=[world.plan.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/geo+json"
    features = {f["properties"]["code"]: f for f in response.json()["features"]}
    # Two adjacent unit squares dissolve into one 2 × 1 polygon.
    geometry = features["W-T1"]["geometry"]
    xs = (
        [x for ring in geometry["coordinates"][0] for x, _y in [ring]]
        if geometry["type"] == "Polygon"
        else None
    )
    assert geometry["type"] == "Polygon" and min(xs) == 0 and max(xs) == 2
    # Leaves without units: the hull of their accounts (all at one point in the factory: a point).
    assert features["E-T1"]["geometry"]["type"] == "Point"
    assert set(features) == {"E-T1", "E-T2", "W-T1", "W-T2"}  # leaves only


def test_outlines_are_scoped_and_follow_edits(client, world):
    in_review(world.plan)
    client.force_login(world.manager_west)
    codes = {
        f["properties"]["code"]
        for f in client.get(reverse("plan-outlines", args=[world.plan.pk])).json()["features"]
    }
    assert codes == {"W-T1", "W-T2"}
    client.force_login(world.outsider)
    assert client.get(reverse("plan-outlines", args=[world.plan.pk])).status_code == 404
    # A unit assigned later shows on the next request despite the cache of unions.
    client.force_login(world.planner)
    client.get(reverse("plan-outlines", args=[world.plan.pk]))
    assign_unit(world.plan, GeoUnitFactory(geom=square(5, 5)), world.leaves["E-T2"])
    features = {
        f["properties"]["code"]: f
        for f in client.get(reverse("plan-outlines", args=[world.plan.pk])).json()["features"]
    }
    assert features["E-T2"]["geometry"]["type"] == "Polygon"


def test_state_outlines_for_the_base_layer(client, world):
    GeoUnitFactory(level="state", code="08", name="Colorado", geom=square(-109, 37, 7))
    client.force_login(world.rep_user)
    response = client.get(reverse("map-states"))
    assert response.status_code == 200
    [feature] = response.json()["features"]
    assert feature["properties"] == {"code": "08", "name": "Colorado"}


def test_cached_figures_follow_plan_edits_and_imports(world):
    def accounts_in(code):
        figures = comparison.plan_figures(user=world.planner, plans=[world.plan])[world.plan.pk]
        return {t.code: t for t in figures.territories}[code].metrics

    assert accounts_in("W-T1")["accounts"] == 2
    services.account_assignments_move(
        plan=world.plan, account_ids=[world.accounts["W-T1"][0].pk], territory=world.leaves["W-T2"]
    )
    world.plan.refresh_from_db()  # the move bumped the version, which keys the cache
    assert accounts_in("W-T1")["accounts"] == 1
    account = world.accounts["W-T2"][0]
    account.revenue = 5000
    account.save()  # an import saves rows, which changes the data fingerprint
    assert accounts_in("W-T2")["revenue"] == 5000 + 1000 + 1000  # its own two and the moved one

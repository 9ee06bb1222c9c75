"""Assignment rules over the API: list, add, edit and delete them with the plan version, and preview
how many accounts an edit would move, computed by the one resolver and leaving nothing behind."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from territories import services
from territories.choices import AssignmentRole, ChangeKind
from territories.models import AccountAssignment, AssignmentRule, Change, Plan, RulePostalCode
from tests.factories import GeoUnitFactory, assign_unit, square

pytestmark = pytest.mark.django_db

MANUFACTURING = [{"field": "industry", "op": "eq", "value": "manufacturing"}]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def version(plan: Plan) -> int:
    plan.refresh_from_db()
    return plan.version


def owners(plan) -> dict[str, str]:
    return {
        a.account.name: a.territory.code
        for a in AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY).select_related(
            "account", "territory"
        )
    }


def snapshot(plan):
    return (
        owners(plan),
        version(plan),
        Change.objects.count(),
        AssignmentRule.objects.count(),
        RulePostalCode.objects.count(),
    )


@pytest.fixture
def geography(world):
    """A county covering every world account (all at 0.5, 0.5), assigned to E-T2: the resolver's
    geography step sends everyone there when no rule matches."""
    unit = GeoUnitFactory(geom=square(0, 0))
    assign_unit(world.plan, unit, world.leaves["E-T2"])
    return unit


def preview(user, plan, **body):
    return client_for(user).post(f"/api/v1/plans/{plan.pk}/rules/preview/", body, format="json")


def test_preview_counts_the_accounts_a_new_rule_would_move_and_keeps_nothing(world, geography):
    plan = world.plan
    before = snapshot(plan)
    response = preview(
        world.planner, plan, name="Makers", territory=world.leaves["W-T1"].pk, conditions=MANUFACTURING
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    # Without the rule the resolver sends all 8 accounts to E-T2 (geography); with it, to W-T1.
    # Two already sit in W-T1 by hand, so 6 would move.
    assert body["would_move"] == 6 and body["matched"] == 8 and body["decided_by_rule"] == 8
    gains = {(row["territory"]["code"] if row["territory"] else None): row for row in body["by_territory"]}
    assert gains["W-T1"]["gain"] == 6 and gains["W-T1"]["loss"] == 0
    assert gains["E-T1"]["loss"] == 2 and gains["E-T2"]["loss"] == 2 and gains["W-T2"]["loss"] == 2
    assert len(body["sample"]) == 6 and all(s["to"]["code"] == "W-T1" for s in body["sample"])
    moving = {a.pk for code in ("E-T1", "E-T2", "W-T2") for a in world.accounts[code]}
    assert set(body["account_ids"]) == moving
    assert body["version"] == before[1]
    assert snapshot(plan) == before


def test_saving_the_rule_moves_what_the_preview_said_in_one_batch(world, geography):
    plan = world.plan
    v = version(plan)
    body = {"name": "Makers", "territory": world.leaves["W-T1"].pk, "conditions": MANUFACTURING}
    expected = preview(world.planner, plan, **body).json()["would_move"]
    response = client_for(world.planner).post(
        f"/api/v1/plans/{plan.pk}/rules/", {**body, "version": v}, format="json"
    )
    assert response.status_code == 201, response.json()
    saved = response.json()
    assert saved["moved"] == expected == 6 and saved["version"] == v + 1 == version(plan)
    assert saved["rule"]["territory"]["code"] == "W-T1" and saved["rule"]["description"] == (
        "industry is manufacturing"
    )
    assert set(owners(plan).values()) == {"W-T1"}
    changes = Change.objects.filter(plan=plan, plan_version=v + 1)
    assert {c.batch for c in changes} == {changes.first().batch}
    assert sorted(c.kind for c in changes).count(ChangeKind.ACCOUNT_MOVED) == 6
    assert changes.get(kind=ChangeKind.RULE_CHANGED).actor == world.planner
    listed = client_for(world.planner).get(f"/api/v1/plans/{plan.pk}/rules/").json()["results"]
    assert [r["name"] for r in listed] == ["Makers"]


def test_moved_rows_record_the_rule_and_replace_a_colliding_overlay(world, geography):
    plan = world.plan
    account = world.accounts["E-T1"][0]
    AccountAssignment.objects.create(
        plan=plan, account=account, territory=world.leaves["W-T1"], role="overlay", source="manual"
    )
    result = services.rule_add(
        plan=plan, territory=world.leaves["W-T1"], name="Makers", conditions=MANUFACTURING
    )
    rows = AccountAssignment.objects.filter(plan=plan, account=account)
    assert [(r.role, r.territory.code, r.source, r.rule_id) for r in rows] == [
        ("primary", "W-T1", "rule", result["rule"].pk)
    ]
    moved = AccountAssignment.objects.filter(plan=plan, role="primary", source="rule")
    assert moved.count() == 6 and {r.rule_id for r in moved} == {result["rule"].pk}


def test_resolver_order_is_respected_a_later_rule_moves_nothing(world, geography):
    plan = world.plan
    services.rule_add(
        plan=plan, territory=world.leaves["W-T1"], name="First", conditions=MANUFACTURING, priority=10
    )
    response = preview(
        world.planner,
        plan,
        name="Second",
        territory=world.leaves["W-T2"].pk,
        conditions=MANUFACTURING,
        priority=20,
    )
    assert response.json()["would_move"] == 0 and response.json()["decided_by_rule"] == 0
    # Placed before the first rule, it takes everything.
    response = preview(
        world.planner,
        plan,
        name="Second",
        territory=world.leaves["W-T2"].pk,
        conditions=MANUFACTURING,
        priority=5,
    )
    assert response.json()["would_move"] == 8


def test_locked_accounts_and_hand_placed_ones_the_rules_never_decided_stay(world):
    plan = world.plan
    locked = world.accounts["E-T1"][0]
    AccountAssignment.objects.filter(plan=plan, account=locked).update(locked=True)
    only_one = [{"field": "name", "op": "eq", "value": "E-T2 account 1"}]
    result = services.rule_add(
        plan=plan,
        territory=world.leaves["W-T2"],
        name="One account",
        conditions=only_one,
        expected_version=version(plan),
    )
    assert result["moved"] == 1
    now = owners(plan)
    assert now["E-T2 account 1"] == "W-T2"
    # No units and no other rule: a full rebuild would unassign everyone else; saving a rule does not.
    assert now["E-T1 account 1"] == "E-T1" and now["E-T2 account 2"] == "E-T2" and len(now) == 8


def test_postal_code_lists_are_rows_and_previewed(world, geography):
    plan = world.plan
    for i, account in enumerate(world.accounts["E-T1"] + world.accounts["W-T1"]):
        account.postal_code = f"0213{i}"
        account.save()
    body = {
        "name": "Boston ZIPs",
        "territory": world.leaves["W-T2"].pk,
        "conditions": [{"field": "postal_code", "op": "in_postal_list"}],
        "postal_codes": "02130, 2131\n02132",
    }
    response = preview(world.planner, plan, **body)
    assert response.status_code == 200, response.json()
    assert response.json()["matched"] == 3 and response.json()["would_move"] == 3
    response = client_for(world.planner).post(
        f"/api/v1/plans/{plan.pk}/rules/", {**body, "version": version(plan)}, format="json"
    )
    assert response.status_code == 201, response.json()
    rule_id = response.json()["rule"]["id"]
    detail = client_for(world.planner).get(f"/api/v1/rules/{rule_id}/").json()
    assert detail["postal_codes"] == ["02130", "02131", "02132"] and detail["postal_codes_count"] == 3


def test_edit_and_delete_preview_then_move_accounts_back(world, geography):
    plan = world.plan
    saved = services.rule_add(
        plan=plan, territory=world.leaves["W-T1"], name="Makers", conditions=MANUFACTURING
    )
    rule = saved["rule"]
    client = client_for(world.planner)
    # Narrow the rule to two accounts by name: six go back to geography (E-T2).
    narrower = [{"field": "name", "op": "prefix", "value": "w-t1"}]
    body = preview(world.planner, plan, rule=rule.pk, conditions=narrower).json()
    assert body["would_move"] == 6
    response = client.patch(
        f"/api/v1/rules/{rule.pk}/", {"conditions": narrower, "version": version(plan)}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["moved"] == 6 and response.json()["rule"]["conditions"] == narrower
    assert sorted(owners(plan).values()).count("E-T2") == 6
    change = Change.objects.filter(kind=ChangeKind.RULE_CHANGED).last()
    assert change.payload["changed"]["conditions"] == [MANUFACTURING, narrower]
    assert preview(world.planner, plan, rule=rule.pk, delete=True).json()["would_move"] == 2
    response = client.delete(f"/api/v1/rules/{rule.pk}/", {"version": version(plan)}, format="json")
    assert response.status_code == 200 and response.json()["moved"] == 2
    assert set(owners(plan).values()) == {"E-T2"} and not AssignmentRule.objects.exists()


def test_invalid_rules_name_the_field_and_nothing_is_saved(world):
    plan = world.plan
    before = snapshot(plan)
    client = client_for(world.planner)
    bad = {
        "name": "",
        "territory": world.west.pk,
        "conditions": [
            {"field": "industry", "op": "eq", "value": "x"},
            {"field": "colour", "op": "eq", "value": 1},
        ],
        "priority": 1,
        "version": before[1],
    }
    response = client.post(f"/api/v1/plans/{plan.pk}/rules/", bad, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"name", "territory", "conditions"}
    assert "condition 2" in errors["conditions"][0] and "unknown field 'colour'" in errors["conditions"][0]
    assert "rules send accounts to leaf territories" in errors["territory"][0]
    response = client.post(
        f"/api/v1/plans/{plan.pk}/rules/",
        {
            "name": "ZIPs",
            "territory": world.leaves["W-T1"].pk,
            "conditions": [{"field": "postal_code", "op": "in_postal_list"}],
            "postal_codes": [],
            "version": before[1],
        },
        format="json",
    )
    assert response.status_code == 400 and "postal_codes" in response.json()["errors"]
    response = preview(world.planner, plan, name="x", territory=999999, conditions=[])
    assert response.status_code == 400 and "territory" in response.json()["errors"]
    nul = [{"field": "industry", "op": "eq", "value": "a\x00b"}]
    response = preview(world.planner, plan, name="x", territory=world.leaves["W-T1"].pk, conditions=nul)
    assert response.status_code == 400 and "NUL" in response.json()["errors"]["conditions"][0]
    assert snapshot(plan) == before


def test_stale_rule_edits_are_409(world):
    plan = world.plan
    rule = services.rule_add(plan=plan, territory=world.leaves["W-T1"], name="R", conditions=MANUFACTURING)[
        "rule"
    ]
    stale = version(plan) - 1
    response = client_for(world.planner).patch(
        f"/api/v1/rules/{rule.pk}/", {"name": "S", "version": stale}, format="json"
    )
    assert response.status_code == 409
    rule.refresh_from_db()
    assert rule.name == "R"


def test_only_planners_edit_rules_and_managers_read_their_scope(world):
    plan = world.plan
    plan.status = "in_review"
    plan.save()
    services.rule_add(plan=plan, territory=world.leaves["W-T1"], name="West rule", conditions=MANUFACTURING)
    services.rule_add(plan=plan, territory=world.leaves["E-T1"], name="East rule", conditions=MANUFACTURING)
    manager = client_for(world.manager_west)
    assert [r["name"] for r in manager.get(f"/api/v1/plans/{plan.pk}/rules/").json()["results"]] == [
        "West rule"
    ]
    response = manager.post(
        f"/api/v1/plans/{plan.pk}/rules/preview/", {"name": "x", "conditions": []}, format="json"
    )
    assert response.status_code == 403
    rule = AssignmentRule.objects.get(name="East rule")
    assert manager.get(f"/api/v1/rules/{rule.pk}/").status_code == 404
    assert client_for(world.outsider).get(f"/api/v1/plans/{plan.pk}/rules/").status_code == 404
    response = client_for(world.rep_user).delete(
        f"/api/v1/rules/{rule.pk}/", {"version": version(plan)}, format="json"
    )
    assert response.status_code == 403


def test_rules_of_an_approved_plan_cannot_be_changed(world):
    rule = services.rule_add(
        plan=world.plan, territory=world.leaves["W-T1"], name="R", conditions=MANUFACTURING
    )["rule"]
    Plan.objects.filter(pk=world.plan.pk).update(status="approved")
    response = client_for(world.planner).patch(
        f"/api/v1/rules/{rule.pk}/", {"name": "S", "version": version(world.plan)}, format="json"
    )
    assert response.status_code == 400 and "read-only" in response.json()["message"]
    response = preview(world.planner, world.plan, rule=rule.pk, delete=True)
    assert response.status_code == 400 and "plan" in response.json()["errors"]

"""The one resolver: each step, their order, and agreement between one-account resolution and the
set-based plan materialization."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.gis.geos import Point
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Account
from territories import resolver, services
from territories.choices import AssignmentSource, ChangeKind, UnitLevel
from territories.models import AccountAssignment, AssignmentRule, Change, RulePostalCode
from tessera_common.errors import ApplicationError

from ..factories import AccountFactory, GeoUnitFactory, PlanFactory, TerritoryFactory, assign_unit, square

pytestmark = pytest.mark.django_db


@pytest.fixture
def geo():
    """County A (0..1), county B (1..2), county C (2..3, unassigned) inside a state (0..3)."""
    plan = PlanFactory()
    t = {
        code: TerritoryFactory(plan=plan, code=code, name=f"Territory {code}")
        for code in ("T1", "T2", "T3", "TR")
    }
    state = GeoUnitFactory(level=UnitLevel.STATE, code="99", name="Squareland", geom=square(0, 0, 3))
    a = GeoUnitFactory(code="99001", name="A County", parent=state, geom=square(0, 0))
    b = GeoUnitFactory(code="99002", name="B County", parent=state, geom=square(1, 0))
    GeoUnitFactory(code="99003", name="C County", parent=state, geom=square(2, 0))
    assign_unit(plan, a, t["T1"])
    assign_unit(plan, b, t["T2"])
    assign_unit(plan, state, t["T3"])
    return plan, t


def at(x, y):
    return Point(x, y, srid=4326)


def resolve(plan, account):
    return resolver.resolve_account(plan=plan, account=Account.objects.get(pk=account.pk))


def test_geography_prefers_the_finest_assigned_unit(geo):
    plan, t = geo
    in_a = AccountFactory(location=at(0.5, 0.5))
    in_c = AccountFactory(location=at(2.5, 0.5))  # county C is unassigned: the state decides
    r = resolve(plan, in_a)
    assert (r.territory, r.step, r.unit.code) == (t["T1"], "geography", "99001")
    assert "A County" in r.explanation
    r = resolve(plan, in_c)
    assert (r.territory, r.step, r.unit.code) == (t["T3"], "geography", "99")


def test_unassigned_when_nothing_applies(geo):
    plan, _ = geo
    nowhere = AccountFactory(location=at(50, 50))
    no_location = AccountFactory(location=None)
    assert resolve(plan, nowhere).territory is None
    assert resolve(plan, nowhere).step == "unassigned"
    assert "no location" in resolve(plan, no_location).explanation


def test_rules_beat_geography_and_go_by_priority(geo):
    plan, t = geo
    services.rule_create(
        plan=plan,
        territory=t["TR"],
        name="Healthcare",
        priority=20,
        conditions=[{"field": "industry", "op": "eq", "value": "Healthcare"}],
    )
    big = services.rule_create(
        plan=plan,
        territory=t["T2"],
        name="Big healthcare",
        priority=10,
        conditions=[
            {"field": "industry", "op": "eq", "value": "healthcare"},
            {"field": "revenue", "op": "gte", "value": 1_000_000},
        ],
    )
    small = AccountFactory(location=at(0.5, 0.5), industry="Healthcare", revenue=Decimal("10"))
    large = AccountFactory(location=at(0.5, 0.5), industry="Healthcare", revenue=Decimal("2000000"))
    other = AccountFactory(location=at(0.5, 0.5), industry="Retail")
    assert (resolve(plan, small).territory, resolve(plan, small).step) == (t["TR"], "rule")
    r = resolve(plan, large)
    assert (r.territory, r.rule) == (t["T2"], big)
    assert "Big healthcare" in r.explanation and "priority 10" in r.explanation
    assert resolve(plan, other).territory == t["T1"]


def test_equal_priorities_break_ties_by_creation(geo):
    plan, t = geo
    first = services.rule_create(plan=plan, territory=t["T2"], name="first", priority=5, conditions=[])
    services.rule_create(plan=plan, territory=t["T3"], name="second", priority=5, conditions=[])
    assert resolve(plan, AccountFactory(location=None)).rule == first


def test_postal_code_list_rule(geo):
    plan, t = geo
    services.rule_create(
        plan=plan,
        territory=t["TR"],
        name="Boston ZIPs",
        conditions=[{"field": "postal_code", "op": "in_postal_list"}],
        postal_codes=["02134", "2135", "02136"],
    )
    assert RulePostalCode.objects.count() == 3
    assert resolve(plan, AccountFactory(location=None, postal_code="02135")).territory == t["TR"]
    assert resolve(plan, AccountFactory(location=None, postal_code="10001")).territory is None


def test_parent_beats_rules_and_locks_beat_parents(geo):
    plan, t = geo
    services.rule_create(
        plan=plan,
        territory=t["TR"],
        name="Healthcare",
        conditions=[{"field": "industry", "op": "eq", "value": "Healthcare"}],
    )
    parent = AccountFactory(location=at(1.5, 0.5), industry="Retail")  # county B → T2
    child = AccountFactory(location=at(0.5, 0.5), industry="Healthcare", parent=parent)
    grandchild = AccountFactory(location=at(2.5, 0.5), parent=child)
    r = resolve(plan, child)
    assert (r.territory, r.step, r.parent_account) == (t["T2"], "parent", parent)
    assert parent.name in r.explanation
    assert resolve(plan, grandchild).territory == t["T2"]

    services.account_assignments_move(plan=plan, account_ids=[child.pk], territory=t["T1"], lock=True)
    r = resolve(plan, child)
    assert (r.territory, r.step, r.source) == (t["T1"], "locked", "manual")
    # The locked child now carries its grandchild with it.
    assert (resolve(plan, grandchild).territory, resolve(plan, grandchild).step) == (t["T1"], "parent")


def test_child_of_an_unassigned_parent_keeps_its_own_answer(geo):
    plan, t = geo
    parent = AccountFactory(location=None)
    child = AccountFactory(location=at(0.5, 0.5), parent=parent)
    r = resolve(plan, child)
    assert (r.territory, r.step) == (t["T1"], "geography")


def test_parent_cycles_are_ignored(geo):
    plan, t = geo
    a = AccountFactory(location=at(0.5, 0.5))
    b = AccountFactory(location=at(1.5, 0.5), parent=a)
    Account.objects.filter(pk=a.pk).update(parent=b)
    assert resolve(plan, a).territory == t["T1"]
    assert resolve(plan, b).territory == t["T2"]
    services.plan_materialize(plan=plan)
    owners = dict(AccountAssignment.objects.filter(plan=plan).values_list("account_id", "territory_id"))
    assert owners == {a.pk: t["T1"].pk, b.pk: t["T2"].pk}


def test_resolve_facts_routes_an_unsaved_lead(geo):
    plan, t = geo
    r = resolver.resolve_facts(plan=plan, facts={"industry": "Retail", "location": at(1.2, 0.2)})
    assert (r.territory, r.step) == (t["T2"], "geography")
    assert Account.objects.count() == 0


def test_invalid_stored_rule_is_reported_by_name(geo):
    plan, t = geo
    AssignmentRule.objects.create(
        plan=plan, territory=t["T1"], name="Broken", conditions=[{"field": "colour", "op": "eq", "value": 1}]
    )
    with pytest.raises(ApplicationError, match="Rule 'Broken'"):
        services.plan_materialize(plan=plan)


def _mixed_accounts(t):
    parent = AccountFactory(location=at(1.5, 0.5), industry="Retail")
    accounts = [
        parent,
        AccountFactory(location=at(0.5, 0.5), industry="Healthcare", parent=parent),
        AccountFactory(location=at(0.5, 0.5), industry="Healthcare"),
        AccountFactory(location=at(0.2, 0.7), industry="Retail", revenue=Decimal("5000000")),
        AccountFactory(location=at(2.5, 0.5), industry="Retail"),
        AccountFactory(location=at(50, 50), industry="Retail"),
        AccountFactory(location=None, industry="Retail", postal_code="02134"),
        AccountFactory(location=None, industry="Energy", attributes={"tier": "Gold"}),
        AccountFactory(location=at(1.5, 0.5), industry="", employees=None),
    ]
    accounts.append(AccountFactory(location=at(2.5, 0.5), parent=accounts[1]))
    return accounts


def _add_rules(plan, t):
    services.rule_create(
        plan=plan,
        territory=t["TR"],
        name="Healthcare",
        priority=30,
        conditions=[{"field": "industry", "op": "eq", "value": "healthcare"}],
    )
    services.rule_create(
        plan=plan,
        territory=t["T3"],
        name="Big",
        priority=10,
        conditions=[{"field": "revenue", "op": "gte", "value": 1_000_000}],
    )
    services.rule_create(
        plan=plan,
        territory=t["T2"],
        name="Gold tier or Boston",
        priority=20,
        conditions=[{"field": "attributes.tier", "op": "eq", "value": "gold"}],
    )
    services.rule_create(
        plan=plan,
        territory=t["T2"],
        name="Boston",
        priority=25,
        conditions=[
            {"field": "postal_code", "op": "in_postal_list"},
            {"field": "employees", "op": "ne", "value": 7},
        ],
        postal_codes=["02134"],
    )


def test_materialization_agrees_with_the_one_account_resolver(geo):
    plan, t = geo
    _add_rules(plan, t)
    accounts = _mixed_accounts(t)
    locked = accounts[4]
    services.account_assignments_move(plan=plan, account_ids=[locked.pk], territory=t["TR"], lock=True)

    result = services.plan_materialize(plan=plan)

    stored = {a.account_id: a for a in AccountAssignment.objects.filter(plan=plan)}
    for account in accounts:
        expected = resolve(plan, account)
        row = stored.get(account.pk)
        assert (row.territory_id if row else None) == (
            expected.territory.pk if expected.territory else None
        ), (
            account.name,
            expected.explanation,
        )
        if row is not None:
            assert row.source == expected.source
    assert result.accounts == len(accounts)
    assert result.unassigned == sum(1 for a in accounts if resolve(plan, a).territory is None)
    assert result.by_source["locked"] == 1
    assert stored[locked.pk].locked and stored[locked.pk].territory == t["TR"]


def test_materialization_replaces_unlocked_moves_and_records_what_moved(geo):
    plan, t = geo
    account = AccountFactory(location=at(0.5, 0.5))
    keeper = AccountFactory(location=at(0.5, 0.5))
    first = services.plan_materialize(plan=plan)
    assert first.moved == 0  # the first build records one summary Change, not one per account
    services.account_assignments_move(plan=plan, account_ids=[account.pk], territory=t["T2"], lock=False)
    services.account_assignments_move(plan=plan, account_ids=[keeper.pk], territory=t["T2"], lock=True)
    version = type(plan).objects.get(pk=plan.pk).version

    again = services.plan_materialize(plan=plan)

    assert again.moved == 1
    assert AccountAssignment.objects.get(plan=plan, account=account).territory == t["T1"]
    assert AccountAssignment.objects.get(plan=plan, account=keeper).territory == t["T2"]
    moved = Change.objects.get(batch=again.batch, kind=ChangeKind.ACCOUNT_MOVED)
    assert (moved.account, moved.territory_from, moved.territory_to) == (account, t["T2"], t["T1"])
    assert type(plan).objects.get(pk=plan.pk).version == version + 1
    assert Change.objects.filter(batch=again.batch, kind=ChangeKind.PLAN_MATERIALIZED).count() == 1


def test_materialization_is_set_based(geo):
    """The number of SQL statements does not grow with the number of accounts."""
    plan, t = geo
    _add_rules(plan, t)
    _mixed_accounts(t)
    with CaptureQueriesContext(connection) as few:
        services.plan_materialize(plan=plan)
    for i in range(60):
        AccountFactory(location=at(0.01 * i, 0.5), industry="Healthcare" if i % 3 else "Retail")
    with CaptureQueriesContext(connection) as many:
        services.plan_materialize(plan=plan)
    assert len(many.captured_queries) <= len(few.captured_queries) + 1  # +1: the per-account Change insert
    assert AccountAssignment.objects.filter(plan=plan).count() >= 60


def test_source_of_materialized_rows(geo):
    plan, t = geo
    _add_rules(plan, t)
    accounts = _mixed_accounts(t)
    services.plan_materialize(plan=plan)
    sources = dict(AccountAssignment.objects.filter(plan=plan).values_list("account_id", "source"))
    assert sources[accounts[0].pk] == AssignmentSource.GEOGRAPHY
    assert sources[accounts[1].pk] == AssignmentSource.PARENT
    assert sources[accounts[2].pk] == AssignmentSource.RULE


def test_active_plan_records_first_owners_but_drafts_do_not(geo):
    plan, t = geo
    account = AccountFactory(location=at(0.5, 0.5))
    draft_run = services.plan_materialize(plan=plan)
    assert draft_run.moved == 0
    AccountAssignment.objects.filter(plan=plan).delete()
    type(plan).objects.filter(pk=plan.pk).update(status="active", effective_from="2026-01-01")
    plan.refresh_from_db()
    active_run = services.plan_materialize(plan=plan)
    assert active_run.moved == 1
    change = Change.objects.get(batch=active_run.batch, kind=ChangeKind.ACCOUNT_MOVED)
    assert (change.account, change.territory_from, change.territory_to) == (account, None, t["T1"])

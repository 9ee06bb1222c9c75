"""Scope: each persona sees only its part of the hierarchy."""

from __future__ import annotations

import datetime as dt

import pytest

from territories import selectors
from territories.choices import PlanStatus
from territories.models import Plan

pytestmark = pytest.mark.django_db


def codes(queryset):
    return sorted(queryset.values_list("code", flat=True))


def account_names(world, user):
    plan = world.plan
    return sorted(selectors.account_list(user=user, plan=plan).values_list("name", flat=True))


def test_planner_and_integration_see_everything(world):
    for user in (world.planner, world.integration, world.admin):
        assert selectors.visible_territory_ids(user=user, plan=world.plan) is None
        assert selectors.territory_list(user=user, plan=world.plan).count() == 8
        assert len(account_names(world, user)) == 8


def test_manager_sees_only_their_region_subtree(world):
    user = world.manager_west
    assert codes(selectors.territory_list(user=user, plan=world.plan)) == ["W", "W-D1", "W-T1", "W-T2"]
    assert account_names(world, user) == sorted(
        a.name for code in ("W-T1", "W-T2") for a in world.accounts[code]
    )
    assert sorted(selectors.rep_list(user=user, plan=world.plan).values_list("external_id", flat=True)) == [
        "REP-W-T1",
        "REP-W-T2",
    ]


def test_rep_sees_only_their_own_territory(world):
    user = world.rep_user
    assert codes(selectors.territory_list(user=user, plan=world.plan)) == ["E-T1"]
    assert account_names(world, user) == sorted(a.name for a in world.accounts["E-T1"])
    assert list(selectors.rep_list(user=user, plan=world.plan)) == [world.reps["E-T1"]]


def test_outsider_sees_nothing(world):
    user = world.outsider
    assert selectors.territory_list(user=user, plan=world.plan).count() == 0
    assert account_names(world, user) == []
    assert selectors.rep_list(user=user, plan=world.plan).count() == 0
    assert selectors.plan_list(user=user).count() == 0


def test_managers_do_not_see_drafts(world):
    assert list(selectors.plan_list(user=world.planner)) == [world.plan]
    assert selectors.plan_list(user=world.manager_west).count() == 0
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.IN_REVIEW)
    assert list(selectors.plan_list(user=world.manager_west)) == [world.plan]
    assert list(selectors.plan_list(user=world.rep_user)) == [world.plan]


def test_deeper_hierarchies_are_followed(world):
    from tests.factories import TerritoryFactory

    sub = TerritoryFactory(plan=world.plan, parent=world.leaves["W-T2"], code="W-T2-a", level_name="micro")
    deeper = TerritoryFactory(plan=world.plan, parent=sub, code="W-T2-a-i", level_name="nano")
    ids = selectors.visible_territory_ids(user=world.manager_west, plan=world.plan)
    assert deeper.pk in ids and world.leaves["E-T1"].pk not in ids


def test_account_scope_defaults_to_the_plan_in_effect_today(world):
    user = world.manager_west
    assert selectors.account_list(user=user).count() == 0  # nothing is published yet
    Plan.objects.filter(pk=world.plan.pk).update(
        status=PlanStatus.ACTIVE,
        effective_from=dt.date(2000, 1, 1),
        published_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    )
    assert selectors.plan_active_on() == world.plan
    assert selectors.account_list(user=user).count() == 4


def test_inactive_user_sees_nothing(world):
    world.planner.is_active = False
    assert selectors.territory_list(user=world.planner, plan=world.plan).count() == 0
    assert selectors.account_list(user=world.planner, plan=world.plan).count() == 0

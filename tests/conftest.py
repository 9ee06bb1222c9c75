"""Shared fixtures: personas (a planner, a manager of one region, a rep, an outsider, an
integration) over a small two-region plan."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from accounts.choices import Role
from accounts.models import Account, Rep, User
from territories.models import Plan, Territory

from .factories import AccountFactory, PlanFactory, RepFactory, TerritoryFactory, UserFactory, add_member


@dataclass
class World:
    """A plan with regions East and West, one district each, two leaf territories each, a rep per
    leaf and two accounts per leaf, plus the personas who look at it."""

    plan: Plan
    east: Territory
    west: Territory
    leaves: dict[str, Territory]
    reps: dict[str, Rep]
    accounts: dict[str, list[Account]]
    planner: User
    manager_west: User
    rep_user: User
    outsider: User
    integration: User
    admin: User


@pytest.fixture
def world(db) -> World:
    from territories.choices import AssignmentSource
    from territories.models import AccountAssignment

    plan = PlanFactory(name="World plan")
    manager_west = UserFactory(username="manager.west", role=Role.MANAGER)
    east = TerritoryFactory(plan=plan, code="E", name="East", level_name="region")
    west = TerritoryFactory(plan=plan, code="W", name="West", level_name="region", manager=manager_west)
    leaves, reps, accounts = {}, {}, {}
    for region in (east, west):
        district = TerritoryFactory(
            plan=plan,
            parent=region,
            code=f"{region.code}-D1",
            name=f"{region.name} D1",
            level_name="district",
        )
        for i in (1, 2):
            code = f"{region.code}-T{i}"
            leaf = TerritoryFactory(plan=plan, parent=district, code=code, name=f"{region.name} {i}")
            rep = RepFactory(external_id=f"REP-{code}", name=f"Rep {code}")
            add_member(leaf, rep)
            leaves[code], reps[code] = leaf, rep
            accounts[code] = [AccountFactory(name=f"{code} account {n}") for n in (1, 2)]
            for account in accounts[code]:
                AccountAssignment.objects.create(
                    plan=plan, account=account, territory=leaf, source=AssignmentSource.MANUAL
                )
    rep_user = UserFactory(username="rep.e1", role=Role.REP)
    reps["E-T1"].user = rep_user
    reps["E-T1"].save()
    return World(
        plan=plan,
        east=east,
        west=west,
        leaves=leaves,
        reps=reps,
        accounts=accounts,
        planner=UserFactory(username="planner", role=Role.PLANNER),
        manager_west=manager_west,
        rep_user=rep_user,
        outsider=UserFactory(username="outsider", role=Role.REP),
        integration=UserFactory(username="crm", role=Role.INTEGRATION),
        admin=UserFactory(username="root", role=Role.ADMIN, is_staff=True, is_superuser=True),
    )

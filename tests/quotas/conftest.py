"""A quota plan over the shared `world` (East/West, two leaves each, one rep per leaf)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from accounts.choices import Role
from quotas import services
from quotas.models import Booking

from ..factories import RepFactory, UserFactory, add_member


@pytest.fixture
def fiscal_year(db):
    return services.fiscal_year_create(year=2026)


@pytest.fixture
def quota_plan(world, fiscal_year):
    """FY2026 quotas for the world plan: 1.2M new business, 600k renewal, 240k upsell, with last
    year's bookings on every account (West books twice as much as East)."""
    services.fiscal_year_create(year=2025)
    n = 0
    for code, accounts in world.accounts.items():
        for account in accounts:
            for month in (3, 6, 12):
                n += 1
                Booking.objects.create(
                    external_id=f"HIST-{n}",
                    account=account,
                    amount=Decimal("2000") if code.startswith("W") else Decimal("1000"),
                    booked_on=dt.date(2025, month, 15),
                    component="new",
                )
    return services.quota_plan_create(
        name="FY26 quotas",
        territory_plan=world.plan,
        fiscal_year=fiscal_year,
        targets={"new": "1200000", "renewal": "600000", "upsell": "240000"},
        actor=world.planner,
    )


@pytest.fixture
def allocated(world, quota_plan):
    services.quota_plan_allocate(quota_plan=quota_plan, method="potential", unit="100", actor=world.planner)
    quota_plan.refresh_from_db()
    return quota_plan


@pytest.fixture
def hierarchy_managers(world):
    """A district manager under the West region manager, and a second rep in W-T1."""
    district = world.west.children.get()
    manager_district = UserFactory(username="manager.wd1", role=Role.MANAGER)
    district.manager = manager_district
    district.save()
    second = RepFactory(external_id="REP-W-T1-b", name="Second rep W-T1")
    add_member(world.leaves["W-T1"], second)
    return manager_district, second

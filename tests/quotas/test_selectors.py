import datetime as dt
from decimal import Decimal

import pytest

from quotas import selectors
from quotas.models import Booking, FiscalPeriod, Quota, QuotaPlan

pytestmark = pytest.mark.django_db


@pytest.fixture
def money(world):
    year = FiscalPeriod.objects.create(
        kind="year", name="FY2026", start=dt.date(2026, 1, 1), end=dt.date(2026, 12, 31)
    )
    quota_plan = QuotaPlan.objects.create(name="FY26 quotas", territory_plan=world.plan, fiscal_year=year)
    Quota.objects.create(quota_plan=quota_plan, period=year, component="new", amount=Decimal("1000000"))
    for code, leaf in world.leaves.items():
        Quota.objects.create(
            quota_plan=quota_plan, period=year, territory=leaf, component="new", amount=250000
        )
        for n, account in enumerate(world.accounts[code]):
            Booking.objects.create(
                external_id=f"B-{code}-{n}",
                account=account,
                amount=Decimal("100"),
                booked_on=dt.date(2026, 3, 1),
                component="new",
            )
    return quota_plan


def test_planner_sees_all_quotas_and_bookings(world, money):
    assert selectors.quota_list(user=world.planner, quota_plan=money).count() == 5
    assert selectors.booking_list(user=world.planner, plan=world.plan).count() == 8


def test_manager_sees_their_region_only(world, money):
    quotas = selectors.quota_list(user=world.manager_west, quota_plan=money)
    assert sorted(q.territory.code for q in quotas) == ["W-T1", "W-T2"]
    bookings = selectors.booking_list(user=world.manager_west, plan=world.plan)
    assert {b.external_id[:6] for b in bookings} == {"B-W-T1", "B-W-T2"}


def test_rep_and_outsider(world, money):
    assert [q.territory.code for q in selectors.quota_list(user=world.rep_user, quota_plan=money)] == ["E-T1"]
    assert selectors.booking_list(user=world.rep_user, plan=world.plan).count() == 2
    assert selectors.quota_list(user=world.outsider, quota_plan=money).count() == 0
    assert selectors.booking_list(user=world.outsider, plan=world.plan).count() == 0
    assert selectors.quota_plan_list(user=world.outsider).count() == 0

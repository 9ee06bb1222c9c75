"""New accounts get an owner in the active plan; existing owners, including planners' moves, stay."""

from __future__ import annotations

import datetime as dt
from unittest import mock

from django.utils import timezone

from accounts.services import account_bulk_upsert
from territories import services
from territories.choices import PlanStatus
from territories.models import AccountAssignment, Change, Plan, UnitAssignment

from ..factories import GeoUnitFactory, square


def _activate(plan: Plan) -> None:
    Plan.objects.filter(pk=plan.pk).update(
        status=PlanStatus.ACTIVE, effective_from=dt.date(2020, 1, 1), published_at=timezone.now()
    )


def test_only_unowned_accounts_get_an_owner_and_moves_stay(world):
    leaf = world.leaves["W-T1"]
    other = world.leaves["W-T2"]
    unit = GeoUnitFactory(geom=square(-105.5, 39.0, 2.0))
    UnitAssignment.objects.create(plan=world.plan, unit=unit, territory=leaf)
    _activate(world.plan)
    # A planner moved this account by hand (unlocked): a full rebuild would send it back.
    moved = world.accounts["W-T1"][0]
    AccountAssignment.objects.filter(plan=world.plan, account=moved).update(territory=other, source="manual")
    result = account_bulk_upsert(
        rows=[{"external_id": "NEW-1", "name": "New Co", "latitude": 39.5, "longitude": -105.0}]
    )
    new_id = result.rows[0].id
    outcome = services.accounts_assign_unowned()
    assert outcome is not None
    owner = AccountAssignment.objects.get(plan=world.plan, account_id=new_id, role="primary")
    assert owner.territory_id == leaf.pk and owner.source == "geography"
    kept = AccountAssignment.objects.get(plan=world.plan, account=moved, role="primary")
    assert kept.territory_id == other.pk
    assert Change.objects.filter(plan=world.plan, account_id=new_id, territory_to=leaf).exists()


def test_no_active_plan_means_nothing_to_do(world):
    assert services.accounts_assign_unowned() is None


def test_creating_accounts_queues_one_assignment_run(world, django_capture_on_commit_callbacks):
    from django.core.cache import cache

    from territories.tasks import ASSIGN_PENDING_KEY

    cache.delete(ASSIGN_PENDING_KEY)
    rows = [{"external_id": "Q-1", "name": "Q1", "latitude": 39.5, "longitude": -105.0}]
    with mock.patch("territories.tasks.assign_unowned_accounts.apply_async") as queued:
        with django_capture_on_commit_callbacks(execute=True):
            account_bulk_upsert(rows=rows)
        with django_capture_on_commit_callbacks(execute=True):
            account_bulk_upsert(rows=[{**rows[0], "external_id": "Q-2"}])
        with django_capture_on_commit_callbacks(execute=True):
            account_bulk_upsert(rows=[{"external_id": "Q-1", "name": "Q1 renamed"}])
    assert queued.call_count == 1
    cache.delete(ASSIGN_PENDING_KEY)

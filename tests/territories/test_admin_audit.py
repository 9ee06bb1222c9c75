"""Admin edits of a plan's contents bump its version and leave a Change, like the services do."""

import pytest
from django.urls import reverse

from territories.choices import PlanStatus
from territories.models import AccountAssignment, Change, Plan

pytestmark = pytest.mark.django_db


def test_moving_an_account_in_the_admin_is_recorded(client, world):
    client.force_login(world.admin)
    row = AccountAssignment.objects.get(plan=world.plan, account=world.accounts["E-T1"][0])
    version = world.plan.version
    url = reverse("admin:territories_accountassignment_change", args=[row.pk])
    response = client.post(
        url,
        {
            "plan": world.plan.pk,
            "account": row.account_id,
            "territory": world.leaves["W-T1"].pk,
            "role": "primary",
            "source": "manual",
            "locked": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    change = Change.objects.get(plan=world.plan, kind="account_moved")
    assert (
        change.actor == world.admin
        and change.payload["via"] == "admin"
        and "territory" in change.payload["fields"]
    )
    assert Plan.objects.get(pk=world.plan.pk).version == version + 1


def test_archived_plans_are_read_only_in_the_admin(client, world):
    Plan.objects.filter(pk=world.plan.pk).update(status=PlanStatus.ARCHIVED)
    client.force_login(world.admin)
    leaf = world.leaves["E-T1"]
    response = client.post(reverse("admin:territories_territory_delete", args=[leaf.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert type(leaf).objects.filter(pk=leaf.pk).exists()

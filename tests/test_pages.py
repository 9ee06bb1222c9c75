"""The browser pages that exist so far: sign-in and the plan list, scoped by role."""

import pytest
from django.urls import reverse

from territories import services

pytestmark = pytest.mark.django_db


def test_home_requires_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_login_page_renders_and_rejects_bad_passwords(client, world):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "planner", "password": "wrong"})
    assert "match. Please try again" in response.content.decode()
    response = client.post(reverse("login"), {"username": "planner", "password": "pw-for-tests"})
    assert response.status_code == 302


def test_planner_sees_plans_with_headline_figures(client, world):
    services.plan_clone(plan=world.plan, name="Scenario B")
    client.force_login(world.planner)
    html = client.get(reverse("home")).content.decode()
    assert "World plan" in html and "Scenario B" in html and "based on World plan" in html
    assert '<td class="num">4</td>' in html  # leaf territories of the world plan


def test_outsider_sees_no_plans(client, world):
    client.force_login(world.outsider)
    html = client.get(reverse("home")).content.decode()
    assert "World plan" not in html and "No plans to show" in html

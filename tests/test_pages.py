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


def test_manager_sees_figures_of_their_subtree_only(client, world):
    from territories.models import Plan

    Plan.objects.filter(pk=world.plan.pk).update(status="in_review")
    client.force_login(world.manager_west)
    html = client.get(reverse("home")).content.decode()
    assert '<td class="num">2</td>' in html  # West's two leaves, not all four
    assert '<td class="num">4</td>' in html  # West's four accounts


def test_plan_list_queries_do_not_grow_with_plans(client, world, django_assert_max_num_queries):
    for n in range(5):
        services.plan_clone(plan=world.plan, name=f"Scenario {n}")
    client.force_login(world.planner)
    with django_assert_max_num_queries(12):
        client.get(reverse("home"))


def test_pages_name_an_icon_and_favicon_ico_leads_to_it(client):
    from django.contrib.staticfiles import finders

    html = client.get(reverse("login")).content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response.url == "/static/favicon.svg"
    assert finders.find("favicon.svg")

"""Reviewing and publishing a plan: status transitions from the review page (in order, with the plan
version), comments from managers and reps while the plan is in review (page and API), and the
timeline the approver reads."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from accounts.models import ApiToken
from territories import services
from territories.choices import ChangeKind, PlanStatus
from territories.models import Change, Plan, PlanComment

pytestmark = pytest.mark.django_db


def review_url(plan) -> str:
    return reverse("plan-review", args=[plan.pk])


def comments_url(plan) -> str:
    return reverse("review-api:plan-comments", args=[plan.pk])


def transition(client, plan, status, version=None):
    return client.post(
        review_url(plan),
        {"action": "transition", "status": status, "version": plan.version if version is None else version},
    )


@pytest.fixture
def reviewed(world):
    """The world plan, sent to review by the planner."""
    return services.plan_transition(plan=world.plan, status=PlanStatus.IN_REVIEW, actor=world.planner)


# --- transitions --------------------------------------------------------------------------------


def test_planner_moves_a_plan_through_review_and_publishes_it(client, world):
    client.force_login(world.planner)
    plan = world.plan
    assert transition(client, plan, PlanStatus.IN_REVIEW).status_code == 302
    plan.refresh_from_db()
    assert plan.status == PlanStatus.IN_REVIEW
    assert transition(client, plan, PlanStatus.APPROVED).status_code == 302
    plan.refresh_from_db()
    response = client.post(
        review_url(plan), {"action": "publish", "effective_from": "2026-01-01", "version": plan.version}
    )
    assert response.status_code == 302
    plan.refresh_from_db()
    assert plan.status == PlanStatus.ACTIVE and plan.effective_from == dt.date(2026, 1, 1)
    html = client.get(review_url(plan)).content.decode()
    assert "Draft → In review" in html and "In review → Approved" in html
    assert "Approved → Active, effective from 2026-01-01" in html
    statuses = Change.objects.filter(plan=plan, kind=ChangeKind.PLAN_STATUS).count()
    assert statuses == 3


def test_transitions_refuse_skipping_a_step(client, world):
    client.force_login(world.planner)
    response = transition(client, world.plan, PlanStatus.APPROVED)
    assert response.status_code == 400
    assert "A plan that is draft cannot become approved." in response.content.decode()
    response = transition(client, world.plan, PlanStatus.ACTIVE)
    assert response.status_code == 400 and "Publish an approved plan" in response.content.decode()
    response = client.post(review_url(world.plan), {"action": "publish", "effective_from": "2026-01-01"})
    assert (
        response.status_code == 400 and "Only an approved plan can be published" in response.content.decode()
    )
    world.plan.refresh_from_db()
    assert world.plan.status == PlanStatus.DRAFT


def test_a_stale_version_is_a_conflict_that_changes_nothing(client, world):
    client.force_login(world.planner)
    response = transition(client, world.plan, PlanStatus.IN_REVIEW, version=world.plan.version + 1)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Someone changed this plan meanwhile." in html and "changed since you loaded it" in html
    world.plan.refresh_from_db()
    assert world.plan.status == PlanStatus.DRAFT


def test_publishing_needs_a_valid_date(client, world, reviewed):
    plan = services.plan_transition(plan=reviewed, status=PlanStatus.APPROVED, actor=world.planner)
    client.force_login(world.planner)
    response = client.post(
        review_url(plan), {"action": "publish", "effective_from": "31/12/2026", "version": plan.version}
    )
    assert response.status_code == 400 and "is not a date; use YYYY-MM-DD" in response.content.decode()
    response = client.post(
        review_url(plan), {"action": "publish", "effective_from": "", "version": plan.version}
    )
    assert response.status_code == 400 and "needs an effective date" in response.content.decode()
    plan.refresh_from_db()
    assert plan.status == PlanStatus.APPROVED


def test_managers_and_reps_cannot_change_status(client, world, reviewed):
    for user in (world.manager_west, world.rep_user):
        client.force_login(user)
        page = client.get(review_url(reviewed)).content.decode()
        assert "Approve</button>" not in page and "Planners move plans through review" in page
        assert transition(client, reviewed, PlanStatus.APPROVED).status_code == 403
    reviewed.refresh_from_db()
    assert reviewed.status == PlanStatus.IN_REVIEW


def test_review_page_is_scoped(client, world):
    client.force_login(world.manager_west)
    assert client.get(review_url(world.plan)).status_code == 404  # a draft is not theirs to see
    client.force_login(world.outsider)
    services.plan_transition(plan=world.plan, status=PlanStatus.IN_REVIEW)
    assert client.get(review_url(world.plan)).status_code == 404


def test_unknown_action_is_refused(client, world):
    client.force_login(world.planner)
    response = client.post(review_url(world.plan), {"action": "explode"})
    assert response.status_code == 400 and "Unknown action" in response.content.decode()


# --- comments -----------------------------------------------------------------------------------


def test_manager_comments_and_the_approver_reads_it(client, world, reviewed):
    client.force_login(world.manager_west)
    response = client.post(
        review_url(reviewed),
        {"action": "comment", "body": "W-T2 is too big for one rep.", "territory": world.leaves["W-T2"].pk},
    )
    assert response.status_code == 302
    comment = PlanComment.objects.get()
    assert comment.author == world.manager_west and comment.plan_status == PlanStatus.IN_REVIEW
    assert comment.territory == world.leaves["W-T2"]
    client.force_login(world.planner)
    html = client.get(review_url(reviewed)).content.decode()
    assert "W-T2 is too big for one rep." in html and "manager.west" in html
    assert "Read the 1 comment before approving." in html and "Approve</button>" in html
    assert "Review (1 comment)" in client.get(reverse("home")).content.decode()


def test_comment_page_refuses_a_territory_outside_scope(client, world, reviewed):
    client.force_login(world.manager_west)
    for territory in (world.leaves["E-T1"].pk, "abc"):
        response = client.post(
            review_url(reviewed), {"action": "comment", "body": "Hm", "territory": territory}
        )
        assert response.status_code == 400
        assert "not one of this plan&#x27;s territories you can see" in response.content.decode()
        assert "Hm</textarea>" in response.content.decode()  # the text is kept for another try
    assert not PlanComment.objects.exists()


def test_comments_only_while_in_review(client, world):
    client.force_login(world.planner)
    page = client.get(review_url(world.plan)).content.decode()
    assert "Comments are taken while a plan is in review; &#x27;World plan&#x27; is draft." in page
    response = client.post(review_url(world.plan), {"action": "comment", "body": "Early thoughts"})
    assert response.status_code == 403 and "is draft" in response.content.decode()
    response = client.post(
        comments_url(world.plan), {"body": "Early thoughts"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert (
        response.json()["message"] == "Comments are taken while a plan is in review; 'World plan' is draft."
    )
    assert not PlanComment.objects.exists()


def test_comment_api_round_trip(client, world, reviewed):
    client.force_login(world.rep_user)
    response = client.post(
        comments_url(reviewed),
        {"body": "My accounts look right.", "territory": world.leaves["E-T1"].pk},
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["author"]["username"] == "rep.e1" and body["plan_status"] == "in_review"
    assert body["territory"] == {"id": world.leaves["E-T1"].pk, "code": "E-T1", "name": "East 1"}
    listed = client.get(comments_url(reviewed)).json()
    assert [c["body"] for c in listed] == ["My accounts look right."]
    assert set(listed[0]) == {"id", "author", "body", "territory", "plan_status", "created"}


def test_comment_validation(client, world, reviewed):
    client.force_login(world.manager_west)
    response = client.post(comments_url(reviewed), {"body": "   "}, content_type="application/json")
    assert response.status_code == 400 and response.json()["errors"] == {"body": ["This field is required."]}
    response = client.post(comments_url(reviewed), {"body": "x" * 5001}, content_type="application/json")
    assert response.status_code == 400 and "at most 5,000 characters" in response.json()["message"]
    # A territory outside the manager's subtree is refused by name, not silently dropped.
    response = client.post(
        comments_url(reviewed),
        {"body": "East?", "territory": world.leaves["E-T1"].pk},
        content_type="application/json",
    )
    assert response.status_code == 400 and "territory" in response.json()["errors"]
    assert not PlanComment.objects.exists()


def test_comment_api_scoping(client, world, reviewed):
    PlanComment.objects.create(
        plan=reviewed, author=world.planner, body="East is fine", territory=world.leaves["E-T1"]
    )
    PlanComment.objects.create(plan=reviewed, author=world.planner, body="Overall good")
    client.force_login(world.manager_west)
    assert [c["body"] for c in client.get(comments_url(reviewed)).json()] == ["Overall good"]
    client.force_login(world.rep_user)
    assert [c["body"] for c in client.get(comments_url(reviewed)).json()] == ["East is fine", "Overall good"]
    client.force_login(world.outsider)
    assert client.get(comments_url(reviewed)).status_code == 404
    response = client.post(comments_url(reviewed), {"body": "hi"}, content_type="application/json")
    assert response.status_code == 404
    client.logout()
    assert client.get(comments_url(reviewed)).status_code == 401


def test_integrations_and_read_tokens_cannot_comment(client, world, reviewed):
    key = ApiToken.new_key()
    ApiToken.objects.create(
        user=world.integration,
        name="crm",
        prefix=key[:8],
        key_hash=ApiToken.hash_key(key),
        scopes=["read", "write"],
    )
    response = client.post(
        comments_url(reviewed),
        {"body": "bot"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    assert response.status_code == 403 and "CRM integrations cannot comment" in response.json()["message"]
    read_key = ApiToken.new_key()
    ApiToken.objects.create(
        user=world.planner,
        name="ro",
        prefix=read_key[:8],
        key_hash=ApiToken.hash_key(read_key),
        scopes=["read"],
    )
    response = client.post(
        comments_url(reviewed),
        {"body": "ro"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {read_key}",
    )
    assert response.status_code == 403 and "lacks the 'write' scope" in response.json()["message"]
    assert client.get(comments_url(reviewed), HTTP_AUTHORIZATION=f"Token {read_key}").status_code == 200
    assert not PlanComment.objects.exists()


def test_comments_stay_readable_after_approval(client, world, reviewed):
    PlanComment.objects.create(
        plan=reviewed, author=world.manager_west, body="Looks fair", plan_status="in_review"
    )
    plan = services.plan_transition(plan=reviewed, status=PlanStatus.APPROVED, actor=world.planner)
    client.force_login(world.planner)
    html = client.get(review_url(plan)).content.decode()
    assert "Looks fair" in html and "is approved" in html
    assert Plan.objects.get(pk=plan.pk).status == PlanStatus.APPROVED

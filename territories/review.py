"""Reviewing a plan: comments from managers and reps while it is in review, the status timeline the
approver reads, and which transitions a user may make next.

Kept apart from services.py (shared by several people) but shaped the same way: the write is a
keyword-only, atomic service that raises ApplicationError; the reads are scoped like selectors."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Q, QuerySet

from accounts.choices import Role
from tessera_common.errors import ApplicationError

from .choices import ChangeKind, PlanStatus
from .models import Change, Plan, PlanComment, Territory
from .selectors import visible_territory_ids
from .services import PLAN_TRANSITIONS

COMMENT_MAX_LENGTH = 5000
# Who may write a review comment: the people who own or plan the territories. An integration token
# acts for a system, not a person, and has no say in a review.
COMMENTING_ROLES = {Role.ADMIN, Role.PLANNER, Role.MANAGER, Role.REP}


class CommentRefused(ApplicationError):
    """The user may see the plan but may not comment on it now (HTTP 403, with the reason)."""

    status = 403


def plan_comment_list(*, user, plan: Plan) -> QuerySet[PlanComment]:
    """Comments on a plan the user may see (the caller has checked the plan itself is visible):
    everything for planners; for others, remarks on the whole plan, on territories they see, and
    their own."""
    comments = PlanComment.objects.filter(plan=plan).select_related("author", "territory")
    ids = visible_territory_ids(user=user, plan=plan)
    if ids is None:
        return comments
    return comments.filter(Q(territory__isnull=True) | Q(territory_id__in=ids) | Q(author=user))


def plan_comment_counts(*, plans) -> list[tuple[int, int]]:
    """(plan id, number of comments) for the plans that have comments; for planners, who see all."""
    return list(
        PlanComment.objects.filter(plan__in=plans)
        .values("plan_id")
        .annotate(n=Count("id"))
        .values_list("plan_id", "n")
    )


def plan_comment_refusal(*, user, plan: Plan) -> str | None:
    """Why `user` may not comment on `plan` now, or None when they may."""
    if not (user.is_superuser or user.role in COMMENTING_ROLES):
        return "CRM integrations cannot comment on plans; comments come from people reviewing them."
    if plan.status != PlanStatus.IN_REVIEW:
        return (
            f"Comments are taken while a plan is in review; '{plan.name}' is "
            f"{plan.get_status_display().lower()}."
        )
    return None


@transaction.atomic
def plan_comment_create(*, plan: Plan, author, body: str, territory: Territory | None = None) -> PlanComment:
    """Add a review comment. The plan must be in review; a territory, when given, must be one of the
    plan's that the author may see."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    refusal = plan_comment_refusal(user=author, plan=plan)
    if refusal:
        raise CommentRefused(refusal, {"plan": [refusal]})
    body = (body or "").strip()
    if not body:
        raise ApplicationError("Write a comment first.", {"body": ["This field is required."]})
    if len(body) > COMMENT_MAX_LENGTH:
        raise ApplicationError(
            f"A comment is at most {COMMENT_MAX_LENGTH:,} characters; this one has {len(body):,}.",
            {"body": [f"at most {COMMENT_MAX_LENGTH} characters"]},
        )
    if territory is not None:
        ids = visible_territory_ids(user=author, plan=plan)
        if territory.plan_id != plan.pk or (ids is not None and territory.pk not in ids):
            raise ApplicationError(
                "That territory is not one of this plan's territories you can see.",
                {"territory": ["not in this plan or not in your part of it"]},
            )
    return PlanComment.objects.create(
        plan=plan, author=author, territory=territory, body=body, plan_status=plan.status
    )


def plan_status_timeline(*, plan: Plan) -> list[dict]:
    """The plan's creation and every status or effective-date change, oldest first."""
    changes = (
        Change.objects.filter(plan=plan, kind__in=[ChangeKind.PLAN_CREATED, ChangeKind.PLAN_STATUS])
        .select_related("actor")
        .order_by("at", "id")
    )
    labels = dict(PlanStatus.choices)
    timeline = []
    for change in changes:
        payload = change.payload or {}
        if change.kind == ChangeKind.PLAN_CREATED:
            source = payload.get("cloned_from_name")
            text = f"Created as a copy of {source}" if source else "Created"
            status = PlanStatus.DRAFT
        elif "to" in payload:
            status = payload["to"]
            text = f"{labels.get(payload.get('from'), payload.get('from'))} → {labels.get(status, status)}"
            if payload.get("effective_from"):
                text += f", effective from {payload['effective_from']}"
            if payload.get("reason"):
                text += f" ({payload['reason']})"
        elif "ends" in payload:
            status = PlanStatus.ACTIVE
            text = f"Effective period ends {payload['ends']} (superseded by a newer plan)"
        else:
            status = ""
            text = "Status changed"
        timeline.append(
            {
                "at": change.at,
                "actor": change.actor,
                "status": status,
                "text": text,
                "version": change.plan_version,
            }
        )
    return timeline


def plan_next_statuses(*, user, plan: Plan) -> list[str]:
    """Statuses the user may move the plan to with plan_transition (publishing is separate)."""
    if not getattr(user, "can_plan", False):
        return []
    order = [PlanStatus.IN_REVIEW, PlanStatus.APPROVED, PlanStatus.DRAFT, PlanStatus.ARCHIVED]
    allowed = PLAN_TRANSITIONS.get(plan.status, set())
    return [status for status in order if status in allowed]

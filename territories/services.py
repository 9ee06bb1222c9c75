"""Writes to plans, territories and assignments. Every public service is keyword-only, atomic,
records Changes, and refuses domain errors with ApplicationError."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from django.db import connection, transaction
from django.utils import timezone

from tessera_common.errors import ApplicationError, StaleVersionError
from tessera_common.events import ASSIGNMENT_CHANGED, PLAN_PUBLISHED, event_emit

from . import rules as rule_conditions
from .choices import AssignmentRole, AssignmentSource, ChangeKind, PlanStatus
from .models import (
    AccountAssignment,
    AssignmentRule,
    Change,
    Plan,
    RulePostalCode,
    Territory,
    TerritoryMembership,
    UnitAssignment,
)
from .resolver import MaterializeResult, plan_materialize

__all__ = [
    "plan_materialize",
    "MaterializeResult",
    "plan_check_version",
    "plan_create",
    "plan_clone",
    "plan_transition",
    "plan_publish",
    "plans_activate_due",
    "account_assignments_move",
    "rule_create",
]

# Which status may follow which; publishing (approved → active) goes through plan_publish.
PLAN_TRANSITIONS = {
    PlanStatus.DRAFT: {PlanStatus.IN_REVIEW, PlanStatus.ARCHIVED},
    PlanStatus.IN_REVIEW: {PlanStatus.DRAFT, PlanStatus.APPROVED, PlanStatus.ARCHIVED},
    PlanStatus.APPROVED: {PlanStatus.DRAFT, PlanStatus.ARCHIVED},
    PlanStatus.ACTIVE: {PlanStatus.ARCHIVED},
    PlanStatus.ARCHIVED: set(),
}


def plan_check_version(*, plan: Plan, expected_version: int | None) -> None:
    """Optimistic locking: refuse a write based on an older read of the plan (409)."""
    if expected_version is None:
        return
    if int(expected_version) != plan.version:
        raise StaleVersionError(
            f"Plan '{plan.name}' changed since you loaded it (you have version {expected_version}, "
            f"it is now at {plan.version}). Reload to see the latest edits; nothing was changed.",
            {"version": [f"expected {plan.version}"]},
        )


def _lock_plan(plan: Plan, expected_version: int | None) -> Plan:
    locked = Plan.objects.select_for_update().get(pk=plan.pk)
    plan_check_version(plan=locked, expected_version=expected_version)
    if locked.status in (PlanStatus.ARCHIVED,):
        raise ApplicationError(f"Plan '{locked.name}' is archived and cannot be edited; clone it instead.")
    return locked


def _bump(plan: Plan) -> int:
    plan.version += 1
    Plan.objects.filter(pk=plan.pk).update(version=plan.version, updated=timezone.now())
    return plan.version


def _save_lifecycle(plan: Plan, fields: list[str], actor, payload: dict) -> None:
    """Save a status or effective-date change, bump the version and record it as one Change."""
    plan.save(update_fields=[*fields, "updated"])
    Change.objects.create(
        plan=plan, actor=actor, kind=ChangeKind.PLAN_STATUS, plan_version=_bump(plan), payload=payload
    )


@transaction.atomic
def plan_create(*, name: str, actor=None, description: str = "") -> Plan:
    """A new, empty draft plan."""
    if not name or not name.strip():
        raise ApplicationError("A plan needs a name.", {"name": ["This field is required."]})
    plan = Plan.objects.create(name=name.strip(), description=description, owner=actor)
    Change.objects.create(plan=plan, actor=actor, kind=ChangeKind.PLAN_CREATED, plan_version=plan.version)
    return plan


@transaction.atomic
def plan_clone(*, plan: Plan, name: str, actor=None) -> Plan:
    """A draft copy of `plan` (territories, reps, rules, unit and account assignments) based on it.

    Assignments are copied in SQL, so cloning a 100k-account plan takes about a second."""
    if not name or not name.strip():
        raise ApplicationError("The new scenario needs a name.", {"name": ["This field is required."]})
    clone = Plan.objects.create(
        name=name.strip(), description=plan.description, based_on=plan, owner=actor, metrics=plan.metrics
    )
    territory_map: dict[int, int] = {}
    # Parents first, so each copy can point at its parent's copy.
    pending = list(Territory.objects.filter(plan=plan).order_by("id"))
    while pending:
        remaining = []
        for territory in pending:
            if territory.parent_id is not None and territory.parent_id not in territory_map:
                remaining.append(territory)
                continue
            old_id = territory.pk
            territory.pk = None
            territory.plan = clone
            territory.parent_id = territory_map.get(territory.parent_id) if territory.parent_id else None
            territory.save(force_insert=True)
            territory_map[old_id] = territory.pk
        if len(remaining) == len(pending):
            raise ApplicationError(f"Plan '{plan.name}' has a territory cycle and cannot be cloned.")
        pending = remaining

    TerritoryMembership.objects.bulk_create(
        TerritoryMembership(
            territory_id=territory_map[m.territory_id], rep_id=m.rep_id, role=m.role, share=m.share
        )
        for m in TerritoryMembership.objects.filter(territory__plan=plan)
    )
    rule_map: dict[int, int] = {}
    for rule in AssignmentRule.objects.filter(plan=plan).order_by("id"):
        old_rule_id = rule.pk
        rule.pk = None
        rule.plan = clone
        rule.territory_id = territory_map[rule.territory_id]
        rule.save(force_insert=True)
        rule_map[old_rule_id] = rule.pk
        with connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO {RulePostalCode._meta.db_table} (rule_id, postal_code)
                    SELECT %s, postal_code FROM {RulePostalCode._meta.db_table} WHERE rule_id = %s""",
                [rule.pk, old_rule_id],
            )

    aa_table = AccountAssignment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            """CREATE TEMP TABLE tessera_clone_map (kind char(1), old_id bigint, new_id bigint,
               PRIMARY KEY (kind, old_id)) ON COMMIT DROP"""
        )
        cursor.executemany(
            "INSERT INTO tessera_clone_map VALUES (%s, %s, %s)",
            [("t", old, new) for old, new in territory_map.items()]
            + [("r", old, new) for old, new in rule_map.items()],
        )
        cursor.execute(
            f"""INSERT INTO {UnitAssignment._meta.db_table}
                    (plan_id, unit_id, territory_id, source, locked, created, updated)
                SELECT %s, ua.unit_id, m.new_id, ua.source, ua.locked, now(), now()
                FROM {UnitAssignment._meta.db_table} ua
                JOIN tessera_clone_map m ON m.kind = 't' AND m.old_id = ua.territory_id
                WHERE ua.plan_id = %s""",
            [clone.pk, plan.pk],
        )
        cursor.execute(
            f"""INSERT INTO {aa_table}
                    (plan_id, account_id, territory_id, role, source, locked, rule_id, unit_id,
                     created, updated)
                SELECT %s, aa.account_id, m.new_id, aa.role, aa.source, aa.locked, r.new_id, aa.unit_id,
                       now(), now()
                FROM {aa_table} aa
                JOIN tessera_clone_map m ON m.kind = 't' AND m.old_id = aa.territory_id
                LEFT JOIN tessera_clone_map r ON r.kind = 'r' AND r.old_id = aa.rule_id
                WHERE aa.plan_id = %s""",
            [clone.pk, plan.pk],
        )
        cursor.execute("DROP TABLE tessera_clone_map")
    Change.objects.create(
        plan=clone,
        actor=actor,
        kind=ChangeKind.PLAN_CREATED,
        plan_version=clone.version,
        payload={"cloned_from": plan.pk, "cloned_from_name": plan.name},
    )
    return clone


@transaction.atomic
def plan_transition(*, plan: Plan, status: str, actor=None, expected_version: int | None = None) -> Plan:
    """Move a plan along draft → in review → approved (or back to draft), or archive it."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    plan_check_version(plan=plan, expected_version=expected_version)
    if status not in PlanStatus.values:
        raise ApplicationError(
            f"Unknown plan status {status!r}.", {"status": [f"use one of {PlanStatus.values}"]}
        )
    if status == PlanStatus.ACTIVE:
        raise ApplicationError("Publish an approved plan with an effective date to make it active.")
    if status not in PLAN_TRANSITIONS.get(plan.status, set()):
        raise ApplicationError(
            f"A plan that is {plan.get_status_display().lower()} "
            f"cannot become {PlanStatus(status).label.lower()}.",
            {"status": [f"not allowed from {plan.status}"]},
        )
    old = plan.status
    plan.status = status
    _save_lifecycle(plan, ["status"], actor, {"from": old, "to": status})
    return plan


@transaction.atomic
def plan_publish(
    *, plan: Plan, effective_from: dt.date, actor=None, expected_version: int | None = None
) -> Plan:
    """Make an approved plan active from `effective_from`. The plan active on that date ends the day
    before (its effective_to becomes `effective_from`); a plan that already took effect later is
    refused. Publishing for today or a past date takes effect at once."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    plan_check_version(plan=plan, expected_version=expected_version)
    if plan.status != PlanStatus.APPROVED:
        raise ApplicationError(
            f"Only an approved plan can be published; '{plan.name}' is {plan.get_status_display().lower()}.",
            {"status": ["must be approved"]},
        )
    if effective_from is None:
        raise ApplicationError(
            "Publishing needs an effective date.", {"effective_from": ["This field is required."]}
        )
    later = Plan.objects.select_for_update().filter(
        status=PlanStatus.ACTIVE, effective_from__gte=effective_from
    )
    if later.exists():
        other = later.first()
        raise ApplicationError(
            f"Plan '{other.name}' is already active from {other.effective_from}; "
            f"publish with an effective date after that.",
            {"effective_from": [f"must be after {other.effective_from}"]},
        )
    current = (
        Plan.objects.select_for_update()
        .filter(status=PlanStatus.ACTIVE, effective_from__lt=effective_from)
        .exclude(effective_to__lte=effective_from)
        .first()
    )
    if current is not None:
        current.effective_to = effective_from
        _save_lifecycle(
            current, ["effective_to"], actor, {"ends": effective_from.isoformat(), "superseded_by": plan.pk}
        )
    plan.status = PlanStatus.ACTIVE
    plan.effective_from = effective_from
    plan.effective_to = None
    plan.published_at = timezone.now()
    _save_lifecycle(
        plan,
        ["status", "effective_from", "effective_to", "published_at"],
        actor,
        {"from": PlanStatus.APPROVED, "to": PlanStatus.ACTIVE, "effective_from": effective_from.isoformat()},
    )
    event_emit(
        PLAN_PUBLISHED,
        {
            "plan_id": plan.pk,
            "plan_name": plan.name,
            "effective_from": effective_from.isoformat(),
            "supersedes_plan_id": current.pk if current is not None else None,
            "version": plan.version,
        },
    )
    return plan


@transaction.atomic
def plans_activate_due(*, today: dt.date | None = None) -> list[int]:
    """Archive active plans whose effective period has ended. Returns their ids (run by Celery beat)."""
    today = today or timezone.localdate()
    ended = list(
        Plan.objects.select_for_update().filter(
            status=PlanStatus.ACTIVE, effective_to__isnull=False, effective_to__lte=today
        )
    )
    for plan in ended:
        plan.status = PlanStatus.ARCHIVED
        _save_lifecycle(
            plan,
            ["status"],
            None,
            {"from": PlanStatus.ACTIVE, "to": PlanStatus.ARCHIVED, "reason": "effective period ended"},
        )
    return [plan.pk for plan in ended]


@transaction.atomic
def account_assignments_move(
    *,
    plan: Plan,
    account_ids: Iterable[int],
    territory: Territory,
    actor=None,
    lock: bool | None = None,
    expected_version: int | None = None,
) -> dict:
    """Give `territory` the primary ownership of accounts in `plan` (a manual move), recorded as one
    batch of Changes. `lock=True` also locks them so rebuilding the plan keeps them; `None` keeps each
    account's current lock. Returns {"moved": n, "batch": uuid, "version": v}."""
    plan = _lock_plan(plan, expected_version)
    if territory.plan_id != plan.pk:
        raise ApplicationError("The territory belongs to another plan.", {"territory": ["not in this plan"]})
    if territory.children.exists():
        raise ApplicationError(
            f"{territory.code} {territory.name} is a {territory.level_name}, not a leaf territory; "
            f"accounts belong to leaf territories.",
            {"territory": ["must be a leaf territory"]},
        )
    ids = sorted(set(int(i) for i in account_ids))
    if not ids:
        raise ApplicationError("Choose at least one account to move.", {"account_ids": ["empty"]})
    from accounts.models import Account

    known = set(Account.objects.filter(pk__in=ids).values_list("pk", flat=True))
    missing = [i for i in ids if i not in known]
    if missing:
        raise ApplicationError(
            f"{len(missing)} account id(s) do not exist: {', '.join(map(str, missing[:10]))}",
            {"account_ids": [f"unknown: {', '.join(map(str, missing[:10]))}"]},
        )
    existing = {
        a.account_id: a
        for a in AccountAssignment.objects.select_for_update().filter(
            plan=plan, account_id__in=ids, role=AssignmentRole.PRIMARY
        )
    }
    batch = uuid.uuid4()
    version = _bump(plan)
    changes = []
    to_create = []
    to_update = []
    for account_id in ids:
        current = existing.get(account_id)
        was = {
            "territory_id": current.territory_id if current else None,
            "locked": current.locked if current else False,
            "source": current.source if current else None,
        }
        new_lock = was["locked"] if lock is None else lock
        if was["territory_id"] == territory.pk and was["locked"] == new_lock:
            continue
        if current is None:
            to_create.append(
                AccountAssignment(
                    plan=plan,
                    account_id=account_id,
                    territory=territory,
                    role=AssignmentRole.PRIMARY,
                    source=AssignmentSource.MANUAL,
                    locked=new_lock,
                )
            )
        else:
            if current.territory_id != territory.pk:
                # An overlay row for the same territory would collide with the new primary row.
                AccountAssignment.objects.filter(
                    plan=plan, account_id=account_id, territory=territory, role=AssignmentRole.OVERLAY
                ).delete()
            current.territory = territory
            current.source = AssignmentSource.MANUAL
            current.locked = new_lock
            current.rule = None
            current.unit = None
            to_update.append(current)
        changes.append(
            Change(
                plan=plan,
                actor=actor,
                kind=ChangeKind.ACCOUNT_MOVED
                if was["territory_id"] != territory.pk
                else ChangeKind.LOCK_CHANGED,
                batch=batch,
                account_id=account_id,
                territory_from_id=was["territory_id"],
                territory_to=territory,
                plan_version=version,
                payload={"locked": new_lock, "was_locked": was["locked"], "from_source": was["source"]},
            )
        )
    Change.objects.bulk_create(changes)
    AccountAssignment.objects.bulk_create(to_create)
    AccountAssignment.objects.bulk_update(
        to_update, ["territory", "source", "locked", "rule", "unit", "updated"]
    )
    moved_ids = [c.account_id for c in changes if c.kind == ChangeKind.ACCOUNT_MOVED]
    if moved_ids and plan.status == PlanStatus.ACTIVE:
        # Only the active plan's moves change who owns an account today: that is what CRMs follow.
        event_emit(
            ASSIGNMENT_CHANGED,
            {"plan_id": plan.pk, "batch": str(batch), "accounts": len(moved_ids), "account_ids": moved_ids},
        )
    return {"moved": len(changes), "batch": str(batch), "version": version}


@transaction.atomic
def rule_create(
    *,
    plan: Plan,
    territory: Territory,
    name: str,
    conditions: list,
    priority: int = 100,
    postal_codes: Iterable[str] = (),
    actor=None,
    expected_version: int | None = None,
) -> AssignmentRule:
    """Add an assignment rule (validated conditions; a postal-code list kept as rows)."""
    plan = _lock_plan(plan, expected_version)
    if territory.plan_id != plan.pk:
        raise ApplicationError("The territory belongs to another plan.", {"territory": ["not in this plan"]})
    try:
        parsed = rule_conditions.parse_conditions(conditions)
    except rule_conditions.RuleConditionError as exc:
        raise ApplicationError(f"Invalid rule condition: {exc}", {"conditions": [str(exc)]}) from None
    codes = sorted({rule_conditions.normalize_postal(c) for c in postal_codes if str(c).strip()})
    uses_list = any(c.op == rule_conditions.POSTAL_LIST_OP for c in parsed)
    if uses_list and not codes:
        raise ApplicationError(
            "The rule tests the postal-code list but the list is empty.", {"postal_codes": ["empty"]}
        )
    rule = AssignmentRule.objects.create(
        plan=plan, territory=territory, name=name, priority=priority, conditions=conditions
    )
    RulePostalCode.objects.bulk_create(RulePostalCode(rule=rule, postal_code=c) for c in codes)
    version = _bump(plan)
    Change.objects.create(
        plan=plan,
        actor=actor,
        kind=ChangeKind.RULE_CHANGED,
        plan_version=version,
        territory_to=territory,
        payload={"rule": rule.pk, "name": name, "created": True, "postal_codes": len(codes)},
    )
    return rule

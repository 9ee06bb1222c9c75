"""Writes to plans, territories and assignments. Every public service is keyword-only, atomic,
records Changes, and refuses domain errors with ApplicationError."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterable

from django.db import connection, transaction
from django.utils import timezone

from tessera_common.db import analyze_after_large_write
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
        copied = cursor.rowcount
        cursor.execute("DROP TABLE tessera_clone_map")
    # A copy of a large plan doubles the table: until it is analyzed, PostgreSQL thinks the new plan
    # holds no assignments and reads its tiles, balance and (once published) credits by nested loops.
    analyze_after_large_write(AccountAssignment, rows=copied)
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


def _check_leaf_of(plan: Plan, territory: Territory, what: str) -> None:
    """Refuse a target territory of another plan, or one that is not a leaf (`what` belong to leaves)."""
    if territory.plan_id != plan.pk:
        raise ApplicationError("The territory belongs to another plan.", {"territory": ["not in this plan"]})
    if territory.children.exists():
        raise ApplicationError(
            f"{territory.code} {territory.name} is a {territory.level_name}, not a leaf territory; "
            f"{what} belong to leaf territories.",
            {"territory": ["must be a leaf territory"]},
        )


def _distinct_ids(raw_ids: Iterable[int], *, field: str, empty: str) -> list[int]:
    """The distinct ids, sorted; refused when none are given."""
    ids = sorted(set(int(i) for i in raw_ids))
    if not ids:
        raise ApplicationError(f"Choose at least one {empty} to move.", {field: ["empty"]})
    return ids


def _refuse_missing(model, ids: Iterable[int], *, field: str, noun: str) -> None:
    """Refuse when some of `ids` do not exist (naming the first ten)."""
    ids = list(ids)
    if not ids:
        return
    known = set(model.objects.filter(pk__any=ids).values_list("pk", flat=True))
    missing = [i for i in ids if i not in known]
    if missing:
        shown = ", ".join(map(str, missing[:10]))
        raise ApplicationError(
            f"{len(missing)} {noun} id(s) do not exist: {shown}", {field: [f"unknown: {shown}"]}
        )


def _existing_ids(model, raw_ids: Iterable[int], *, field: str, noun: str, empty: str) -> list[int]:
    """The distinct ids, sorted; refused when none are given or some do not exist."""
    ids = _distinct_ids(raw_ids, field=field, empty=empty)
    _refuse_missing(model, ids, field=field, noun=noun)
    return ids


def _changes_insert(
    *, plan: Plan, actor, batch: uuid.UUID, version: int, territory_to: Territory, changes: list[tuple]
) -> None:
    """One INSERT of a batch of account Changes [(account id, kind, territory from id, payload)], all
    to `territory_to`, from arrays (what Change.objects.bulk_create would write, without the models)."""
    if not changes:
        return
    account_ids, kinds, from_ids, payloads = zip(*changes, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO territories_change (plan_id, actor_id, at, kind, batch, account_id,
                   territory_from_id, territory_to_id, plan_version, payload)
               SELECT %(plan)s, %(actor)s, %(at)s, c.kind, %(batch)s, c.account_id, c.territory_from_id,
                      %(territory_to)s, %(version)s, c.payload
               FROM unnest(%(account_ids)s::bigint[], %(kinds)s::text[], %(from_ids)s::bigint[],
                           %(payloads)s::jsonb[]) AS c(account_id, kind, territory_from_id, payload)""",
            {
                "plan": plan.pk,
                "actor": actor.pk if actor is not None else None,
                "at": timezone.now(),
                "batch": batch,
                "territory_to": territory_to.pk,
                "version": version,
                "account_ids": list(account_ids),
                "kinds": [str(k) for k in kinds],
                "from_ids": list(from_ids),
                "payloads": [json.dumps(p) for p in payloads],
            },
        )


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
    from accounts.models import Account

    plan = _lock_plan(plan, expected_version)
    _check_leaf_of(plan, territory, "accounts")
    ids = _distinct_ids(account_ids, field="account_ids", empty="account")
    # Tuples and set-based statements rather than model instances: a 1,000-account lasso is the
    # planner's everyday move, and building 2,000 objects cost more than the SQL.
    existing = {
        account_id: (pk, territory_id, locked, source)
        for pk, account_id, territory_id, locked, source in AccountAssignment.objects.select_for_update()
        .filter(plan=plan, account_id__any=ids, role=AssignmentRole.PRIMARY)
        .values_list("pk", "account_id", "territory_id", "locked", "source")
    }
    # An account with an owner in the plan exists; only the others need looking up.
    _refuse_missing(Account, (i for i in ids if i not in existing), field="account_ids", noun="account")
    batch = uuid.uuid4()
    version = _bump(plan)
    changes: list[tuple[int, str, int | None, dict]] = []  # account, kind, territory from, payload
    to_create = []
    to_update: list[int] = []
    overlay_displaced: list[int] = []
    for account_id in ids:
        pk, was_territory, was_locked, was_source = existing.get(account_id, (None, None, False, None))
        new_lock = was_locked if lock is None else lock
        if was_territory == territory.pk and was_locked == new_lock:
            continue
        if pk is None:
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
            if was_territory != territory.pk:
                overlay_displaced.append(account_id)
            to_update.append(pk)
        kind = ChangeKind.ACCOUNT_MOVED if was_territory != territory.pk else ChangeKind.LOCK_CHANGED
        payload = {"locked": new_lock, "was_locked": was_locked, "from_source": was_source}
        changes.append((account_id, kind, was_territory, payload))
    _changes_insert(
        plan=plan, actor=actor, batch=batch, version=version, territory_to=territory, changes=changes
    )
    AccountAssignment.objects.bulk_create(to_create)
    # An overlay row for the target territory would collide with the new primary row; one DELETE
    # for all of them (one per account made a 1,000-account move take seconds).
    if overlay_displaced:
        AccountAssignment.objects.filter(
            plan=plan,
            account_id__any=overlay_displaced,
            territory=territory,
            role=AssignmentRole.OVERLAY,
        ).delete()
    # Every updated row gets the same values (lock None keeps each row's own lock), so one UPDATE
    # does it; bulk_update's CASE per row and field took seconds for a 1,000-account lasso.
    same_values = {
        "territory": territory,
        "source": AssignmentSource.MANUAL,
        "rule": None,
        "unit": None,
        "updated": timezone.now(),
    }
    if lock is not None:
        same_values["locked"] = lock
    if to_update:
        AccountAssignment.objects.filter(pk__any=to_update).update(**same_values)
    moved_ids = [account_id for account_id, kind, _, _ in changes if kind == ChangeKind.ACCOUNT_MOVED]
    if moved_ids and plan.status == PlanStatus.ACTIVE:
        # Only the active plan's moves change who owns an account today: that is what CRMs follow.
        event_emit(
            ASSIGNMENT_CHANGED,
            {"plan_id": plan.pk, "batch": str(batch), "accounts": len(moved_ids), "account_ids": moved_ids},
        )
    return {"moved": len(changes), "batch": str(batch), "version": version}


@transaction.atomic
def plan_update(
    *,
    plan: Plan,
    actor=None,
    expected_version: int | None = None,
    name: str | None = None,
    description: str | None = None,
) -> Plan:
    """Rename a plan or change its description (status and dates have their own services).
    Recorded as a Change and bumps the version like any other edit; no change, no new version."""
    plan = _lock_plan(plan, expected_version)
    edited: dict[str, dict] = {}
    if name is not None:
        if not name.strip():
            raise ApplicationError("A plan needs a name.", {"name": ["This field may not be blank."]})
        if len(name.strip()) > Plan._meta.get_field("name").max_length:
            raise ApplicationError("The plan name is too long.", {"name": ["at most 200 characters"]})
        if name.strip() != plan.name:
            edited["name"] = {"from": plan.name, "to": name.strip()}
            plan.name = name.strip()
    if description is not None and description != plan.description:
        edited["description"] = {"from": plan.description, "to": description}
        plan.description = description
    if not edited:
        return plan
    plan.save(update_fields=[*edited, "updated"])
    # ChangeKind has no "plan edited"; plan_status with the edited fields keeps the audit trail
    # without a migration of the choices.
    Change.objects.create(
        plan=plan,
        actor=actor,
        kind=ChangeKind.PLAN_STATUS,
        plan_version=_bump(plan),
        payload={"edited": edited},
    )
    return plan


@transaction.atomic
def unit_assignments_move(
    *,
    plan: Plan,
    unit_ids: Iterable[int],
    territory: Territory,
    actor=None,
    lock: bool | None = None,
    expected_version: int | None = None,
) -> dict:
    """Give geography units to a leaf territory and rebuild the plan's accounts through the one
    resolver, so that accounts located in the units follow them unless a lock, their parent account
    or a rule decides otherwise. The unit moves and the account moves they cause are one batch of
    Changes and one new version. `lock` sets the units' lock (None keeps it).
    Returns {"moved": units, "accounts_moved": n, "batch": uuid, "version": v}."""
    from .models import GeoUnit

    plan = _lock_plan(plan, expected_version)
    _check_leaf_of(plan, territory, "units")
    ids = _existing_ids(GeoUnit, unit_ids, field="unit_ids", noun="unit", empty="geography unit")
    existing = {
        ua.unit_id: ua for ua in UnitAssignment.objects.select_for_update().filter(plan=plan, unit_id__in=ids)
    }
    batch = uuid.uuid4()
    pending = []
    for unit_id in ids:
        current = existing.get(unit_id)
        was_territory = current.territory_id if current else None
        was_locked = current.locked if current else False
        new_lock = was_locked if lock is None else lock
        if was_territory == territory.pk and was_locked == new_lock:
            continue
        if current is None:
            UnitAssignment.objects.create(
                plan=plan,
                unit_id=unit_id,
                territory=territory,
                source=AssignmentSource.MANUAL,
                locked=new_lock,
            )
        else:
            current.territory = territory
            current.source = AssignmentSource.MANUAL
            current.locked = new_lock
            current.save(update_fields=["territory", "source", "locked", "updated"])
        pending.append((unit_id, was_territory, was_locked, new_lock))
    if not pending:
        return {"moved": 0, "accounts_moved": 0, "batch": None, "version": plan.version}
    result = plan_materialize(plan=plan, actor=actor, batch=batch)
    version = Plan.objects.values_list("version", flat=True).get(pk=plan.pk)
    Change.objects.bulk_create(
        Change(
            plan=plan,
            actor=actor,
            kind=ChangeKind.UNIT_MOVED if was_territory != territory.pk else ChangeKind.LOCK_CHANGED,
            batch=batch,
            unit_id=unit_id,
            territory_from_id=was_territory,
            territory_to=territory,
            plan_version=version,
            payload={"locked": new_lock, "was_locked": was_locked, "accounts_moved": result.moved},
        )
        for unit_id, was_territory, was_locked, new_lock in pending
    )
    return {"moved": len(pending), "accounts_moved": result.moved, "batch": str(batch), "version": version}


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


# --- Planner tools: editing territories, reps and rules by hand -----------------------------------
# Only drafts and plans in review are edited by hand: an approved plan waits for publication, and an
# active or archived plan is history that CRMs and bookings already rely on (clone it instead).
EDITABLE_PLAN_STATUSES = (PlanStatus.DRAFT, PlanStatus.IN_REVIEW)
# Colours handed to new territories when none is chosen, cycled by the plan's territory count.
TERRITORY_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
_UNSET: object = object()


def _lock_editable_plan(plan: Plan, expected_version: int | None) -> Plan:
    """_lock_plan, and refuse plans that are not drafts or in review (they are read-only)."""
    locked = _lock_plan(plan, expected_version)
    if locked.status not in EDITABLE_PLAN_STATUSES:
        raise ApplicationError(
            f"Plan '{locked.name}' is {locked.get_status_display().lower()} and read-only; "
            f"clone it to make a scenario you can edit.",
            {"plan": [f"read-only while {locked.status}"]},
        )
    return locked


def _refuse(message: str, errors: dict[str, list[str]]) -> None:
    if errors:
        detail = "; ".join(f"{field}: {problems[0]}" for field, problems in errors.items())
        raise ApplicationError(f"{message} {detail}", errors)


def _territory_ref(territory: Territory | None) -> dict | None:
    if territory is None:
        return None
    return {"id": territory.pk, "code": territory.code, "name": territory.name}


def _territory_snapshot(territory: Territory) -> dict:
    """What a Change keeps of a territory, so history reads well after the row is gone."""
    return {
        "id": territory.pk,
        "code": territory.code,
        "name": territory.name,
        "parent_id": territory.parent_id,
        "level_name": territory.level_name,
        "color": territory.color,
    }


def _territory_holdings(territory: Territory) -> dict[str, int]:
    return {
        "accounts": AccountAssignment.objects.filter(
            territory=territory, role=AssignmentRole.PRIMARY
        ).count(),
        "overlay accounts": AccountAssignment.objects.filter(territory=territory)
        .exclude(role=AssignmentRole.PRIMARY)
        .count(),
        "geography units": UnitAssignment.objects.filter(territory=territory).count(),
        "rules": AssignmentRule.objects.filter(territory=territory).count(),
    }


def _holdings_text(holdings: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in holdings.items() if n)


def _clean_text(value, field: str, errors: dict, *, max_length: int, required: bool = True) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        errors[field] = ["This field is required."]
    elif len(text) > max_length:
        errors[field] = [f"at most {max_length} characters"]
    return text


def _clean_territory_fields(
    *, plan: Plan, values: dict, errors: dict, territory: Territory | None = None
) -> dict:
    """Check name, code, colour, level name and parent (those present in `values`)."""
    cleaned: dict = {}
    if "name" in values:
        cleaned["name"] = _clean_text(values["name"], "name", errors, max_length=200)
    if "code" in values:
        code = _clean_text(values["code"], "code", errors, max_length=50)
        cleaned["code"] = code
        clash = Territory.objects.filter(plan=plan, code__iexact=code)
        if territory is not None:
            clash = clash.exclude(pk=territory.pk)
        if code and "code" not in errors and clash.exists():
            other = clash.first()
            errors["code"] = [f"{other.code} is already used by {other.name} in this plan"]
    if "color" in values:
        color = str(values["color"] or "").strip()
        if not color:
            count = Territory.objects.filter(plan=plan).count()
            color = TERRITORY_PALETTE[count % len(TERRITORY_PALETTE)]
        elif not re.fullmatch(r"#[0-9A-Fa-f]{6}", color):
            errors["color"] = [f"{color!r} is not a colour like #1f6feb"]
        cleaned["color"] = color
    if "level_name" in values:
        cleaned["level_name"] = (
            _clean_text(values["level_name"], "level_name", errors, max_length=50, required=False)
            or "territory"
        )
    if "parent" in values:
        parent = values["parent"]
        cleaned["parent"] = parent
        if parent is not None:
            from .selectors import territory_subtree_ids

            if parent.plan_id != plan.pk:
                errors["parent"] = ["not a territory of this plan"]
            elif territory is not None and parent.pk in territory_subtree_ids(territory=territory):
                errors["parent"] = [f"{parent.code} is {territory.code} itself or one of its descendants"]
            elif holdings := _holdings_text(_territory_holdings(parent)):
                errors["parent"] = [
                    f"{parent.code} {parent.name} owns {holdings}; only leaf territories own them, "
                    f"so it cannot get children (split it instead)"
                ]
    return cleaned


@transaction.atomic
def territory_create(
    *,
    plan: Plan,
    name: str,
    code: str,
    parent: Territory | None = None,
    color: str = "",
    level_name: str = "territory",
    actor=None,
    expected_version: int | None = None,
) -> Territory:
    """Add a territory to a draft plan (a new leaf under `parent`, or a new top-level node)."""
    plan = _lock_editable_plan(plan, expected_version)
    errors: dict[str, list[str]] = {}
    cleaned = _clean_territory_fields(
        plan=plan,
        values={"name": name, "code": code, "color": color, "level_name": level_name, "parent": parent},
        errors=errors,
    )
    _refuse("The territory could not be created.", errors)
    territory = Territory.objects.create(plan=plan, **cleaned)
    Change.objects.create(
        plan=plan,
        actor=actor,
        kind=ChangeKind.TERRITORY_CREATED,
        territory_to=territory,
        plan_version=_bump(plan),
        payload={**_territory_snapshot(territory), "parent_code": parent.code if parent else None},
    )
    territory.plan = plan
    return territory


@transaction.atomic
def territory_update(
    *,
    territory: Territory,
    name=_UNSET,
    code=_UNSET,
    color=_UNSET,
    level_name=_UNSET,
    parent=_UNSET,
    actor=None,
    expected_version: int | None = None,
) -> Territory:
    """Rename, recode, recolour or move a territory under another parent. Only fields given change;
    an edit that changes nothing leaves the plan version alone."""
    plan = _lock_editable_plan(territory.plan, expected_version)
    territory = Territory.objects.select_for_update().get(pk=territory.pk)
    given = {
        key: value
        for key, value in {
            "name": name,
            "code": code,
            "color": color,
            "level_name": level_name,
            "parent": parent,
        }.items()
        if value is not _UNSET
    }
    errors: dict[str, list[str]] = {}
    cleaned = _clean_territory_fields(plan=plan, values=given, errors=errors, territory=territory)
    _refuse("The territory could not be changed.", errors)
    changed = {}
    for key, value in cleaned.items():
        old = territory.parent if key == "parent" else getattr(territory, key)
        if old != value:
            if key == "parent":
                changed["parent"] = [old.code if old else None, value.code if value else None]
            else:
                changed[key] = [old, value]
            setattr(territory, key, value)
    territory.plan = plan
    if not changed:
        return territory
    territory.save()
    Change.objects.create(
        plan=plan,
        actor=actor,
        kind=ChangeKind.TERRITORY_UPDATED,
        territory_to=territory,
        plan_version=_bump(plan),
        payload={**_territory_snapshot(territory), "changed": changed},
    )
    return territory


@transaction.atomic
def territory_delete(*, territory: Territory, actor=None, expected_version: int | None = None) -> int:
    """Delete an empty territory (no children, accounts, units or rules). Returns the new plan
    version. A territory that still owns something is merged into another instead."""
    plan = _lock_editable_plan(territory.plan, expected_version)
    territory = Territory.objects.select_for_update().get(pk=territory.pk)
    children = list(territory.children.order_by("code").values_list("code", flat=True))
    if children:
        raise ApplicationError(
            f"{territory.code} {territory.name} has {len(children)} child territories "
            f"({', '.join(children[:5])}); delete or move them first.",
            {"territory": ["has child territories"]},
        )
    holdings = _holdings_text(_territory_holdings(territory))
    if holdings:
        raise ApplicationError(
            f"{territory.code} {territory.name} still owns {holdings}; merge it into another territory "
            f"instead of deleting it.",
            {"territory": [f"owns {holdings}"]},
        )
    reps = [
        {"rep": m.rep_id, "name": m.rep.name, "role": m.role, "share": str(m.share)}
        for m in territory.memberships.select_related("rep")
    ]
    version = _bump(plan)
    Change.objects.create(
        plan=plan,
        actor=actor,
        kind=ChangeKind.TERRITORY_DELETED,
        territory_from=territory,
        plan_version=version,
        payload={**_territory_snapshot(territory), "reps": reps},
    )
    territory.delete()
    return version


def _is_leaf(territory: Territory) -> bool:
    return not territory.children.exists()


def _moves_to_changes(
    *, plan: Plan, actor, batch, version: int, kind: str, column: str, rows, codes: dict
) -> list[Change]:
    """Change rows for (entity id, from territory id, to territory id) triples; codes keep the
    territories' codes in the payload, since a merged territory's row is deleted afterwards."""
    return [
        Change(
            plan=plan,
            actor=actor,
            kind=kind,
            batch=batch,
            plan_version=version,
            territory_from_id=from_id,
            territory_to_id=to_id,
            payload={"from_code": codes.get(from_id), "to_code": codes.get(to_id), **extra},
            **{column: entity_id},
        )
        for entity_id, from_id, to_id, extra in rows
    ]


@transaction.atomic
def territory_merge(
    *, territory: Territory, into: Territory, actor=None, expected_version: int | None = None
) -> dict:
    """Fold `territory` into `into` and delete it: its accounts, units, rules, reps (and, for a
    region or district, its children) move to `into`, recorded as one batch of Changes.

    Both must be leaves, or both parents: accounts belong to leaves only."""
    plan = _lock_editable_plan(territory.plan, expected_version)
    territory = Territory.objects.select_for_update().get(pk=territory.pk)
    from .selectors import territory_subtree_ids

    errors: dict[str, list[str]] = {}
    if into.plan_id != plan.pk:
        errors["into"] = ["not a territory of this plan"]
    elif into.pk == territory.pk:
        errors["into"] = ["a territory cannot be merged into itself"]
    elif into.pk in territory_subtree_ids(territory=territory) or territory.pk in territory_subtree_ids(
        territory=into
    ):
        errors["into"] = [f"{into.code} and {territory.code} are in one line of the hierarchy"]
    elif _is_leaf(territory) != _is_leaf(into):
        errors["into"] = [
            f"{territory.code} is a {'leaf' if _is_leaf(territory) else 'parent'} and {into.code} is not; "
            f"merge leaves into leaves and parents into parents"
        ]
    _refuse(f"{territory.code} cannot be merged.", errors)

    batch = uuid.uuid4()
    version = _bump(plan)
    codes = {territory.pk: territory.code, into.pk: into.code}
    changes: list[Change] = []

    # Accounts: a primary row moves; an overlay row moves unless `into` already has that account.
    into_accounts = set(AccountAssignment.objects.filter(territory=into).values_list("account_id", flat=True))
    primary = list(
        AccountAssignment.objects.select_for_update().filter(territory=territory, role=AssignmentRole.PRIMARY)
    )
    # The account's overlay row in `into` would collide with the primary row arriving there.
    AccountAssignment.objects.filter(
        territory=into, account_id__in=[a.account_id for a in primary], role=AssignmentRole.OVERLAY
    ).delete()
    AccountAssignment.objects.filter(territory=territory).exclude(role=AssignmentRole.PRIMARY).filter(
        account_id__in=into_accounts
    ).delete()
    moved_accounts = AccountAssignment.objects.filter(territory=territory).update(
        territory=into, updated=timezone.now()
    )
    changes += _moves_to_changes(
        plan=plan,
        actor=actor,
        batch=batch,
        version=version,
        kind=ChangeKind.ACCOUNT_MOVED,
        column="account_id",
        rows=[(a.account_id, territory.pk, into.pk, {"merged": True}) for a in primary],
        codes=codes,
    )
    units = list(UnitAssignment.objects.filter(territory=territory).values_list("unit_id", flat=True))
    UnitAssignment.objects.filter(territory=territory).update(territory=into, updated=timezone.now())
    changes += _moves_to_changes(
        plan=plan,
        actor=actor,
        batch=batch,
        version=version,
        kind=ChangeKind.UNIT_MOVED,
        column="unit_id",
        rows=[(u, territory.pk, into.pk, {"merged": True}) for u in units],
        codes=codes,
    )
    rules = list(AssignmentRule.objects.filter(territory=territory).values_list("pk", "name"))
    AssignmentRule.objects.filter(territory=territory).update(territory=into, updated=timezone.now())
    for rule_id, rule_name in rules:
        changes.append(
            Change(
                plan=plan,
                actor=actor,
                kind=ChangeKind.RULE_CHANGED,
                batch=batch,
                plan_version=version,
                territory_from=territory,
                territory_to=into,
                payload={"rule": rule_id, "name": rule_name, "territory": [territory.code, into.code]},
            )
        )
    children = list(territory.children.order_by("code"))
    for child in children:
        child.parent = into
        child.save(update_fields=["parent", "updated"])
        changes.append(
            Change(
                plan=plan,
                actor=actor,
                kind=ChangeKind.TERRITORY_UPDATED,
                batch=batch,
                plan_version=version,
                territory_to=child,
                payload={**_territory_snapshot(child), "changed": {"parent": [territory.code, into.code]}},
            )
        )
    into_reps = set(into.memberships.values_list("rep_id", flat=True))
    arriving = list(territory.memberships.exclude(rep_id__in=into_reps).select_related("rep"))
    if arriving:
        TerritoryMembership.objects.filter(pk__in=[m.pk for m in arriving]).update(
            territory=into, updated=timezone.now()
        )
        changes.append(
            Change(
                plan=plan,
                actor=actor,
                kind=ChangeKind.MEMBERSHIP_CHANGED,
                batch=batch,
                plan_version=version,
                territory_to=into,
                payload={
                    "added": [
                        {"rep": m.rep_id, "name": m.rep.name, "role": m.role, "share": str(m.share)}
                        for m in arriving
                    ],
                    "from_code": territory.code,
                },
            )
        )
    changes.append(
        Change(
            plan=plan,
            actor=actor,
            kind=ChangeKind.TERRITORY_DELETED,
            batch=batch,
            plan_version=version,
            territory_from=territory,
            territory_to=into,
            payload={
                **_territory_snapshot(territory),
                "merged_into": into.code,
                "accounts": len(primary),
                "units": len(units),
                "rules": len(rules),
                "children": [c.code for c in children],
            },
        )
    )
    Change.objects.bulk_create(changes)
    territory.delete()
    return {
        "into": into,
        "moved_accounts": len(primary),
        "moved_assignments": moved_accounts,
        "moved_units": len(units),
        "moved_rules": len(rules),
        "moved_children": len(children),
        "batch": str(batch),
        "version": version,
    }


def _ids(values, field: str, errors: dict) -> list[int]:
    try:
        return sorted({int(v) for v in values or ()})
    except (TypeError, ValueError):
        errors[field] = ["must be a list of ids"]
        return []


@transaction.atomic
def territory_split(
    *,
    territory: Territory,
    name: str,
    code: str,
    account_ids: Iterable[int] = (),
    unit_ids: Iterable[int] = (),
    color: str = "",
    actor=None,
    expected_version: int | None = None,
) -> dict:
    """Split a leaf: a new sibling leaf takes the chosen accounts and geography units (and the
    unlocked accounts those units placed in it), recorded as one batch of Changes."""
    plan = _lock_editable_plan(territory.plan, expected_version)
    territory = Territory.objects.select_for_update().get(pk=territory.pk)
    errors: dict[str, list[str]] = {}
    if not _is_leaf(territory):
        errors["territory"] = [f"{territory.code} is a {territory.level_name} with children; split a leaf"]
    accounts = _ids(account_ids, "account_ids", errors)
    units = _ids(unit_ids, "unit_ids", errors)
    if not accounts and not units and not errors:
        errors["account_ids"] = ["choose the accounts or geography units the new territory takes"]
    owned = set(
        AccountAssignment.objects.filter(
            territory=territory, role=AssignmentRole.PRIMARY, account_id__in=accounts
        ).values_list("account_id", flat=True)
    )
    foreign = [i for i in accounts if i not in owned]
    if foreign:
        errors["account_ids"] = [
            f"not owned by {territory.code}: {', '.join(map(str, foreign[:10]))}"
            + ("…" if len(foreign) > 10 else "")
        ]
    held = set(
        UnitAssignment.objects.filter(territory=territory, unit_id__in=units).values_list(
            "unit_id", flat=True
        )
    )
    foreign_units = [i for i in units if i not in held]
    if foreign_units:
        errors["unit_ids"] = [f"not assigned to {territory.code}: {', '.join(map(str, foreign_units[:10]))}"]
    cleaned = _clean_territory_fields(
        plan=plan, values={"name": name, "code": code, "color": color}, errors=errors
    )
    _refuse(f"{territory.code} could not be split.", errors)

    new = Territory.objects.create(
        plan=plan, parent=territory.parent, level_name=territory.level_name, **cleaned
    )
    batch = uuid.uuid4()
    version = _bump(plan)
    # Unlocked accounts that a moving unit placed here follow it; everything else stays put.
    followers = set(
        AccountAssignment.objects.filter(
            territory=territory, role=AssignmentRole.PRIMARY, unit_id__in=units, locked=False
        ).values_list("account_id", flat=True)
    )
    moving = sorted(owned | followers)
    AccountAssignment.objects.filter(
        territory=territory, role=AssignmentRole.PRIMARY, account_id__in=moving
    ).update(territory=new, updated=timezone.now())
    UnitAssignment.objects.filter(territory=territory, unit_id__in=units).update(
        territory=new, updated=timezone.now()
    )
    codes = {territory.pk: territory.code, new.pk: new.code}
    changes = [
        Change(
            plan=plan,
            actor=actor,
            kind=ChangeKind.TERRITORY_CREATED,
            batch=batch,
            plan_version=version,
            territory_from=territory,
            territory_to=new,
            payload={**_territory_snapshot(new), "split_from": territory.code},
        )
    ]
    changes += _moves_to_changes(
        plan=plan,
        actor=actor,
        batch=batch,
        version=version,
        kind=ChangeKind.ACCOUNT_MOVED,
        column="account_id",
        rows=[(a, territory.pk, new.pk, {"split": True}) for a in moving],
        codes=codes,
    )
    changes += _moves_to_changes(
        plan=plan,
        actor=actor,
        batch=batch,
        version=version,
        kind=ChangeKind.UNIT_MOVED,
        column="unit_id",
        rows=[(u, territory.pk, new.pk, {"split": True}) for u in units],
        codes=codes,
    )
    Change.objects.bulk_create(changes)
    new.plan = plan
    return {
        "territory": new,
        "moved_accounts": len(moving),
        "moved_units": len(units),
        "batch": str(batch),
        "version": version,
    }


@transaction.atomic
def territory_members_set(
    *, territory: Territory, members: list, actor=None, expected_version: int | None = None
) -> Territory:
    """Replace the reps attached to a territory: [{"rep": id, "role": primary|overlay|support,
    "share": 0–1}]. Errors name the row (members.2.share). No change, no new version."""
    from decimal import Decimal, InvalidOperation

    from accounts.models import Rep

    from .choices import MemberRole

    plan = _lock_editable_plan(territory.plan, expected_version)
    territory = Territory.objects.select_for_update().get(pk=territory.pk)
    errors: dict[str, list[str]] = {}
    if not isinstance(members, list | tuple):
        raise ApplicationError(
            "members must be a list of {rep, role, share}.", {"members": ["must be a list"]}
        )
    wanted: dict[int, tuple[str, Decimal]] = {}
    rep_ids = []
    for index, item in enumerate(members):
        key = f"members.{index}"
        if not isinstance(item, dict):
            errors[key] = ["must be an object with rep, role and share"]
            continue
        try:
            rep_id = int(item.get("rep"))
        except (TypeError, ValueError):
            errors[f"{key}.rep"] = ["must be a rep id"]
            continue
        role = item.get("role") or MemberRole.PRIMARY
        if role not in MemberRole.values:
            errors[f"{key}.role"] = [f"use one of {', '.join(MemberRole.values)}"]
        try:
            share = Decimal(str(item.get("share", 1))).quantize(Decimal("0.001"))
            if not (0 < share <= 1):
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            errors[f"{key}.share"] = ["must be a number above 0 and at most 1"]
            share = Decimal(1)
        if rep_id in wanted:
            errors[f"{key}.rep"] = ["this rep is listed twice"]
        wanted[rep_id] = (role, share)
        rep_ids.append((index, rep_id))
    reps = Rep.objects.in_bulk([rep_id for _, rep_id in rep_ids])
    for index, rep_id in rep_ids:
        rep = reps.get(rep_id)
        if rep is None:
            errors.setdefault(f"members.{index}.rep", [f"no rep with id {rep_id}"])
        elif not rep.active:
            errors.setdefault(f"members.{index}.rep", [f"{rep.name} is inactive"])
    _refuse(f"The reps of {territory.code} could not be changed.", errors)

    current = {m.rep_id: m for m in territory.memberships.select_related("rep")}

    def describe(rep_id: int, role: str, share: Decimal) -> dict:
        name = reps[rep_id].name if rep_id in reps else current[rep_id].rep.name
        return {"rep": rep_id, "name": name, "role": role, "share": str(share)}

    before = [describe(m.rep_id, m.role, m.share) for m in current.values()]
    after = [describe(rep_id, role, share) for rep_id, (role, share) in wanted.items()]
    territory.plan = plan
    if sorted(before, key=lambda d: d["rep"]) == sorted(after, key=lambda d: d["rep"]):
        return territory
    TerritoryMembership.objects.filter(territory=territory).exclude(rep_id__in=list(wanted)).delete()
    for rep_id, (role, share) in wanted.items():
        TerritoryMembership.objects.update_or_create(
            territory=territory, rep_id=rep_id, defaults={"role": role, "share": share}
        )
    Change.objects.create(
        plan=plan,
        actor=actor,
        kind=ChangeKind.MEMBERSHIP_CHANGED,
        territory_to=territory,
        plan_version=_bump(plan),
        payload={"code": territory.code, "before": before, "after": after},
    )
    return territory


# Rules. Saving a rule re-resolves the plan with the one resolver (plan_materialize, run in a
# savepoint that is rolled back) before and after the edit, and moves exactly the accounts whose
# resolved owner changed; accounts the rules never decided (placed by hand or by the optimizer)
# stay where they are. The preview runs the same two passes and keeps nothing.


PREVIEW_MAX_ACCOUNT_IDS = 10_000


class _DryRun(Exception):
    """Raised inside a savepoint to roll back a trial run of the resolver."""


def _resolved_owners(plan: Plan) -> dict[int, tuple]:
    """account id → (territory id, source, rule id, unit id) as the resolver would assign every
    account with the rules as they stand in this transaction; nothing is kept."""
    owners: dict[int, tuple] = {}
    try:
        with transaction.atomic():
            plan_materialize(plan=plan)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""SELECT account_id, territory_id, source, rule_id, unit_id
                        FROM {AccountAssignment._meta.db_table} WHERE plan_id = %s AND role = %s""",
                    [plan.pk, AssignmentRole.PRIMARY],
                )
                owners = {row[0]: row[1:] for row in cursor.fetchall()}
            raise _DryRun
    except _DryRun:
        pass
    return owners


def _current_owners(plan: Plan) -> dict[int, int]:
    return dict(
        AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY).values_list(
            "account_id", "territory_id"
        )
    )


def _rule_moves(before: dict, after: dict, current: dict) -> list[tuple[int, int | None, tuple | None]]:
    """(account id, current territory, new resolution) for accounts whose resolved owner changed
    with the edit and who are not already there."""
    moves = []
    for account_id in sorted(set(before) | set(after)):
        old = before.get(account_id)
        new = after.get(account_id)
        if (old[0] if old else None) == (new[0] if new else None):
            continue
        if current.get(account_id) == (new[0] if new else None):
            continue
        moves.append((account_id, current.get(account_id), new))
    return moves


def _postal_codes_clean(raw, errors: dict) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = re.split(r"[\s,;]+", raw)
    if not isinstance(raw, list | tuple):
        errors["postal_codes"] = ["a list of postal codes, or text with one code per line"]
        return []
    codes = set()
    bad = []
    for value in raw:
        text = str(value).strip()
        if not text:
            continue
        code = rule_conditions.normalize_postal(text)
        if len(code) > 10 or not re.fullmatch(r"[0-9a-z][0-9a-z -]*", code):
            bad.append(text)
        else:
            codes.add(code)
    if bad:
        errors["postal_codes"] = [f"not postal codes: {', '.join(bad[:10])}{'…' if len(bad) > 10 else ''}"]
    return sorted(codes)


def _rule_fields_clean(*, plan: Plan, values: dict, rule: AssignmentRule | None) -> dict:
    """Check a rule's fields (those given); the result can be set on an AssignmentRule."""
    errors: dict[str, list[str]] = {}
    cleaned: dict = {}
    if "name" in values:
        cleaned["name"] = _clean_text(values["name"], "name", errors, max_length=200)
    if "territory" in values:
        territory = values["territory"]
        if territory is None:
            errors["territory"] = ["This field is required."]
        elif territory.plan_id != plan.pk:
            errors["territory"] = ["not a territory of this plan"]
        elif not _is_leaf(territory):
            errors["territory"] = [f"{territory.code} has children; rules send accounts to leaf territories"]
        cleaned["territory"] = territory
    if "priority" in values:
        try:
            priority = int(values["priority"])
            if not -1_000_000 <= priority <= 1_000_000:
                raise ValueError
            cleaned["priority"] = priority
        except (TypeError, ValueError):
            errors["priority"] = ["a whole number (lower runs first)"]
    if "active" in values:
        if not isinstance(values["active"], bool):
            errors["active"] = ["must be true or false"]
        cleaned["active"] = bool(values["active"])
    parsed = None
    if "conditions" in values:
        try:
            parsed = rule_conditions.parse_conditions(values["conditions"])
            cleaned["conditions"] = values["conditions"]
        except rule_conditions.RuleConditionError as exc:
            errors["conditions"] = [str(exc)]
        # PostgreSQL's jsonb cannot store the NUL character (\u0000): refuse it here, not with a 500.
        if "conditions" not in errors and "\\u0000" in json.dumps(values["conditions"]):
            errors["conditions"] = ["values must not contain the NUL character"]
            parsed = None
    codes = _postal_codes_clean(values.get("postal_codes"), errors)
    if codes is not None:
        cleaned["postal_codes"] = codes
    if parsed is None and "conditions" not in errors and rule is not None:
        parsed = rule_conditions.parse_conditions(rule.conditions)
    if parsed is not None:
        uses_list = any(c.op == rule_conditions.POSTAL_LIST_OP for c in parsed)
        if codes is None and rule is not None:
            has_codes = RulePostalCode.objects.filter(rule=rule).exists()
        else:
            has_codes = bool(codes)
        if uses_list and not has_codes:
            errors["postal_codes"] = ["the rule tests the postal-code list, but the list is empty"]
        elif has_codes and not uses_list and codes:
            errors["postal_codes"] = ["no condition uses the list; add the condition 'postal code in list'"]
    _refuse("The rule is invalid.", errors)
    return cleaned


def _rule_apply_fields(*, plan: Plan, rule: AssignmentRule, cleaned: dict) -> dict:
    """Write cleaned fields onto `rule` (saving it) and return {field: [old, new]} for the Change."""
    changed: dict = {}
    codes = cleaned.pop("postal_codes", None)
    for key, value in cleaned.items():
        old = getattr(rule, key)
        if old != value:
            changed[key] = [old.code, value.code] if isinstance(value, Territory) else [old, value]
            setattr(rule, key, value)
    rule.plan = plan
    rule.save()
    if codes is not None:
        existing = set(RulePostalCode.objects.filter(rule=rule).values_list("postal_code", flat=True))
        if existing != set(codes):
            RulePostalCode.objects.filter(rule=rule).exclude(postal_code__in=codes).delete()
            RulePostalCode.objects.bulk_create(
                RulePostalCode(rule=rule, postal_code=c) for c in codes if c not in existing
            )
            changed["postal_codes"] = [len(existing), len(codes)]
    return changed


def _rule_write_moves(*, plan: Plan, moves, actor, batch, version: int, rule_id: int | None) -> int:
    """Move the accounts in `moves` to their new resolved owner (or unassign them)."""
    if not moves:
        return 0
    ids = [account_id for account_id, _, _ in moves]
    rows = {
        a.account_id: a
        for a in AccountAssignment.objects.select_for_update().filter(
            plan=plan, role=AssignmentRole.PRIMARY, account_id__in=ids
        )
    }
    to_create, to_update, to_delete, changes = [], [], [], []
    for account_id, current_territory, new in moves:
        row = rows.get(account_id)
        if row is not None and row.locked:
            continue  # the resolver keeps locked owners; a lock taken meanwhile wins too
        if new is None:
            to_delete.append(row.pk)
            target = None
        else:
            target, source, new_rule, unit = new
            if row is None:
                to_create.append(
                    AccountAssignment(
                        plan=plan,
                        account_id=account_id,
                        territory_id=target,
                        role=AssignmentRole.PRIMARY,
                        source=source,
                        rule_id=new_rule,
                        unit_id=unit,
                    )
                )
            else:
                row.territory_id, row.source, row.rule_id, row.unit_id = target, source, new_rule, unit
                to_update.append(row)
        changes.append(
            Change(
                plan=plan,
                actor=actor,
                kind=ChangeKind.ACCOUNT_MOVED,
                batch=batch,
                plan_version=version,
                account_id=account_id,
                territory_from_id=current_territory,
                territory_to_id=target,
                payload={"source": new[1] if new else "unassigned", "rule": rule_id},
            )
        )
    AccountAssignment.objects.filter(pk__in=to_delete).delete()
    table = AccountAssignment._meta.db_table
    targets = [*to_update, *to_create]
    # Set-based, in one statement each: a rule can move tens of thousands of accounts at once.
    with connection.cursor() as cursor:
        # A primary owner makes an overlay row for the same territory redundant (and would collide).
        cursor.execute(
            f"""DELETE FROM {table} aa
                USING unnest(%s::bigint[], %s::bigint[]) AS m(account_id, territory_id)
                WHERE aa.plan_id = %s AND aa.role <> %s
                  AND aa.account_id = m.account_id AND aa.territory_id = m.territory_id""",
            [
                [row.account_id for row in targets],
                [row.territory_id for row in targets],
                plan.pk,
                AssignmentRole.PRIMARY,
            ],
        )
        cursor.execute(
            f"""UPDATE {table} aa
                SET territory_id = m.territory_id, source = m.source, rule_id = m.rule_id,
                    unit_id = m.unit_id, updated = now()
                FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::bigint[])
                     AS m(id, territory_id, source, rule_id, unit_id)
                WHERE aa.id = m.id""",
            [
                [row.pk for row in to_update],
                [row.territory_id for row in to_update],
                [row.source for row in to_update],
                [row.rule_id for row in to_update],
                [row.unit_id for row in to_update],
            ],
        )
    AccountAssignment.objects.bulk_create(to_create, batch_size=2000)
    Change.objects.bulk_create(changes, batch_size=2000)
    return len(changes)


def _rule_edit(*, plan: Plan, check, edit, actor, expected_version: int | None, describe) -> dict:
    """Run `edit()` (which changes rules and returns (rule, payload)) between two resolver passes
    and move the accounts whose owner changed; one version, one batch of Changes. `check()` validates
    the input first, so a bad edit costs no resolver pass."""
    plan = _lock_editable_plan(plan, expected_version)
    check(plan)
    before = _resolved_owners(plan)
    rule, payload = edit(plan)
    after = _resolved_owners(plan)
    moves = _rule_moves(before, after, _current_owners(plan))
    batch = uuid.uuid4()
    version = _bump(plan)
    Change.objects.create(
        plan=plan,
        actor=actor,
        kind=ChangeKind.RULE_CHANGED,
        batch=batch,
        plan_version=version,
        territory_to_id=describe.get("territory_id"),
        payload={**payload, "moved": len(moves)},
    )
    moved = _rule_write_moves(
        plan=plan, moves=moves, actor=actor, batch=batch, version=version, rule_id=describe.get("rule_id")
    )
    return {"rule": rule, "moved": moved, "batch": str(batch), "version": version}


@transaction.atomic
def rule_add(
    *,
    plan: Plan,
    territory: Territory | None,
    name: str,
    conditions: list,
    priority: int = 100,
    postal_codes=(),
    active: bool = True,
    actor=None,
    expected_version: int | None = None,
) -> dict:
    """Create a rule and move the accounts it now decides (see the note above _DryRun).
    Returns {"rule", "moved", "batch", "version"}."""
    values = {
        "name": name,
        "territory": territory,
        "conditions": conditions,
        "priority": priority,
        "postal_codes": list(postal_codes or []) if not isinstance(postal_codes, str) else postal_codes,
        "active": active,
    }
    describe: dict = {"territory_id": territory.pk if territory else None}
    prepared: dict = {}

    def check(locked: Plan) -> None:
        prepared.update(_rule_fields_clean(plan=locked, values=values, rule=None))

    def edit(locked: Plan):
        cleaned = dict(prepared)
        codes = cleaned.pop("postal_codes", [])
        rule = AssignmentRule.objects.create(plan=locked, **cleaned)
        RulePostalCode.objects.bulk_create(RulePostalCode(rule=rule, postal_code=c) for c in codes)
        describe["rule_id"] = rule.pk
        return rule, {"rule": rule.pk, "name": rule.name, "created": True, "postal_codes": len(codes)}

    return _rule_edit(
        plan=plan, check=check, edit=edit, actor=actor, expected_version=expected_version, describe=describe
    )


@transaction.atomic
def rule_update(
    *, rule: AssignmentRule, values: dict, actor=None, expected_version: int | None = None
) -> dict:
    """Change a rule's name, territory, priority, conditions, postal codes or active flag (those in
    `values`) and move the accounts whose resolved owner changes. Returns like rule_add."""
    describe: dict = {"rule_id": rule.pk, "territory_id": rule.territory_id}
    prepared: dict = {}

    def check(locked: Plan) -> None:
        prepared["rule"] = AssignmentRule.objects.select_for_update().get(pk=rule.pk)
        prepared["cleaned"] = _rule_fields_clean(plan=locked, values=values, rule=prepared["rule"])

    def edit(locked: Plan):
        current = prepared["rule"]
        changed = _rule_apply_fields(plan=locked, rule=current, cleaned=prepared["cleaned"])
        describe["territory_id"] = current.territory_id
        return current, {"rule": current.pk, "name": current.name, "changed": changed}

    return _rule_edit(
        plan=rule.plan,
        check=check,
        edit=edit,
        actor=actor,
        expected_version=expected_version,
        describe=describe,
    )


@transaction.atomic
def rule_delete(*, rule: AssignmentRule, actor=None, expected_version: int | None = None) -> dict:
    """Delete a rule; the accounts it decided go where the rest of the resolver sends them."""
    describe: dict = {"rule_id": None, "territory_id": rule.territory_id}

    def edit(locked: Plan):
        current = AssignmentRule.objects.select_for_update().get(pk=rule.pk)
        payload = {
            "rule": current.pk,
            "name": current.name,
            "deleted": True,
            "priority": current.priority,
            "conditions": current.conditions,
            "territory": current.territory.code,
            "postal_codes": list(current.postal_codes.values_list("postal_code", flat=True)),
        }
        current.delete()
        return None, payload

    return _rule_edit(
        plan=rule.plan,
        check=lambda locked: None,
        edit=edit,
        actor=actor,
        expected_version=expected_version,
        describe=describe,
    )


def rule_preview(
    *,
    plan: Plan,
    values: dict | None = None,
    rule: AssignmentRule | None = None,
    delete: bool = False,
    sample_size: int = 20,
) -> dict:
    """What saving a rule edit would do, without keeping anything: a new rule (`rule` None), a
    change to `rule` (`values`), or deleting it (`delete`). Returns would_move, per-territory gains
    and losses, a sample of moved accounts, and how many accounts the rule matches and decides."""
    from accounts.models import Account

    from .resolver import rule_filter

    values = values or {}
    result: dict = {}
    with transaction.atomic():
        # Read-only, but materializing locks the plan row: take it first, in the same order as edits.
        plan = _lock_editable_plan(plan, None)
        # Validate before the first resolver pass, so bad input costs nothing.
        trial = None if rule is None or delete else AssignmentRule.objects.get(pk=rule.pk)
        cleaned = {} if delete else _rule_fields_clean(plan=plan, values=values, rule=trial)
        before = _resolved_owners(plan)
        try:
            with transaction.atomic():
                if rule is None:
                    codes = cleaned.pop("postal_codes", [])
                    trial = AssignmentRule.objects.create(plan=plan, **cleaned)
                    RulePostalCode.objects.bulk_create(
                        RulePostalCode(rule=trial, postal_code=c) for c in codes
                    )
                elif delete:
                    AssignmentRule.objects.filter(pk=rule.pk).delete()
                else:
                    _rule_apply_fields(plan=plan, rule=trial, cleaned=cleaned)
                after = _resolved_owners(plan)
                if trial is not None:
                    result["matched"] = rule_filter(Account.objects.all(), trial).count()
                    result["decided_by_rule"] = sum(1 for row in after.values() if row[2] == trial.pk)
                else:
                    result["matched"] = 0
                    result["decided_by_rule"] = 0
                raise _DryRun
        except _DryRun:
            pass
    moves = _rule_moves(before, after, _current_owners(plan))
    territory_ids = {t for _, t, _ in moves if t} | {new[0] for _, _, new in moves if new}
    territories = Territory.objects.in_bulk(territory_ids)
    tally: dict[int | None, dict] = {}
    for _, old, new in moves:
        tally.setdefault(old, {"gain": 0, "loss": 0})["loss"] += 1
        tally.setdefault(new[0] if new else None, {"gain": 0, "loss": 0})["gain"] += 1
    by_territory = sorted(
        (
            {
                "territory": _territory_ref(territories.get(tid)) if tid else None,
                "gain": counts["gain"],
                "loss": counts["loss"],
                "net": counts["gain"] - counts["loss"],
            }
            for tid, counts in tally.items()
        ),
        key=lambda row: (-(row["gain"] + row["loss"]), row["territory"]["code"] if row["territory"] else ""),
    )
    sample_ids = [account_id for account_id, _, _ in moves[:sample_size]]
    names = {a.pk: a for a in Account.objects.filter(pk__in=sample_ids).only("pk", "name", "external_id")}
    sample = [
        {
            "account_id": account_id,
            "external_id": names[account_id].external_id if account_id in names else None,
            "name": names[account_id].name if account_id in names else None,
            "from": _territory_ref(territories.get(old)) if old else None,
            "to": _territory_ref(territories.get(new[0])) if new else None,
        }
        for account_id, old, new in moves[:sample_size]
    ]
    return {
        "would_move": len(moves),
        "by_territory": by_territory,
        "sample": sample,
        # Enough to select them on the planner's map; the count above is always complete.
        "account_ids": [account_id for account_id, _, _ in moves[:PREVIEW_MAX_ACCOUNT_IDS]],
        "matched": result["matched"],
        "decided_by_rule": result["decided_by_rule"],
        "version": plan.version,
    }


def accounts_assign_unowned(*, on: dt.date | None = None) -> MaterializeResult | None:
    """Give an owner to every account without one in the plan active `on` (default today), by the
    one resolver, leaving every existing assignment alone. None when no plan is active."""
    from .selectors import plan_active_on

    plan = plan_active_on(date=on)
    if plan is None or plan.status != PlanStatus.ACTIVE:
        return None
    with transaction.atomic():
        plan = Plan.objects.select_for_update().get(pk=plan.pk)
        return plan_materialize(plan=plan, only_unowned=True)

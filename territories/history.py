"""Undo, redo and locks for the planner, built on the append-only Change log.

Every edit is a batch of Changes (one uuid). Undoing a batch writes a new batch whose Changes
`revert` the old ones (payload "history": "undo"); redoing writes a batch reverting the undo
("history": "redo"). The stacks are derived from the user's Change rows in the plan, so they
survive a reload and a restart:

- an undoable edit pushes onto the undo stack and empties the redo stack;
- an edit this module cannot revert (a territory created, a rule changed, a status change) empties
  both: undoing past it could restore accounts into a territory that no longer exists;
- an undo batch moves its target from the undo stack to the redo stack; a redo moves it back.

A revert first checks that every account and unit is still where the batch put it. If someone
else moved one since, nothing is written and the error names the accounts or units concerned.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection, transaction

from tessera_common.errors import ApplicationError
from tessera_common.events import ASSIGNMENT_CHANGED, event_emit

from .choices import AssignmentRole, AssignmentSource, ChangeKind, PlanStatus
from .models import AccountAssignment, Change, Plan, Territory, UnitAssignment
from .resolver import plan_materialize
from .services import _bump, _lock_plan

UNDO = "undo"
REDO = "redo"
# Kinds a batch may contain and still be reverted here. PLAN_MATERIALIZED appears in a unit move's
# batch (the accounts follow their units through the resolver); a rebuild on its own is not undoable.
REVERSIBLE_KINDS = {
    ChangeKind.ACCOUNT_MOVED.value,
    ChangeKind.LOCK_CHANGED.value,
    ChangeKind.UNIT_MOVED.value,
    ChangeKind.PLAN_MATERIALIZED.value,
}
HISTORY_DEPTH = 50  # entries shown per stack


@dataclass
class BatchSummary:
    """One batch of a user's Changes in a plan, as the history needs it."""

    batch: str
    at: str
    kinds: set[str]
    accounts_moved: int
    accounts_locked: int
    accounts_unlocked: int
    units_moved: int
    units_locked: int
    marker: str | None  # UNDO, REDO or None for an ordinary edit
    reverted_batch: str | None
    territory_to_id: int | None
    territory_code: str | None = None

    @property
    def undoable(self) -> bool:
        touched = self.accounts_moved + self.accounts_locked + self.accounts_unlocked + self.units_moved
        touched += self.units_locked
        if not touched or not self.kinds <= REVERSIBLE_KINDS:
            return False
        # A rebuild's summary row only belongs with unit moves.
        return ChangeKind.PLAN_MATERIALIZED.value not in self.kinds or bool(
            self.units_moved + self.units_locked
        )

    @property
    def label(self) -> str:
        parts = []
        target = f" to {self.territory_code}" if self.territory_code else ""
        if self.units_moved:
            parts.append(f"moved {_plural(self.units_moved, 'unit')}{target}")
        elif self.accounts_moved:
            parts.append(f"moved {_plural(self.accounts_moved, 'account')}{target}")
        if self.units_locked:
            parts.append(f"changed the lock of {_plural(self.units_locked, 'unit')}")
        if self.accounts_locked:
            parts.append(f"locked {_plural(self.accounts_locked, 'account')}")
        if self.accounts_unlocked:
            parts.append(f"unlocked {_plural(self.accounts_unlocked, 'account')}")
        text = ", ".join(parts) or "edit"
        return text[0].upper() + text[1:]


@dataclass
class History:
    undo: list[BatchSummary] = field(default_factory=list)
    redo: list[tuple[BatchSummary, BatchSummary]] = field(default_factory=list)  # (undo batch, undone)

    def as_dict(self) -> dict:
        return {
            "undo": [
                {"batch": b.batch, "label": b.label, "at": b.at} for b in reversed(self.undo[-HISTORY_DEPTH:])
            ],
            "redo": [
                {"batch": u.batch, "label": target.label, "at": u.at, "undid": target.batch}
                for u, target in reversed(self.redo[-HISTORY_DEPTH:])
            ],
        }


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _batches(*, plan: Plan, actor) -> list[BatchSummary]:
    """The user's batches in the plan, oldest first, summarised in one grouped query."""
    table = Change._meta.db_table
    sql = f"""
        SELECT b.batch, b.at, b.kinds, b.moved, b.locked, b.unlocked, b.units, b.units_locked,
               b.marker, (SELECT r.batch::text FROM {table} r WHERE r.id = b.reverts_id),
               b.territory_to_id, b.first_id
        FROM (
            SELECT c.batch::text AS batch, min(c.at) AS at, array_agg(DISTINCT c.kind) AS kinds,
                   count(*) FILTER (WHERE c.kind = %(moved)s AND c.account_id IS NOT NULL) AS moved,
                   count(*) FILTER (WHERE c.kind = %(lock)s AND c.account_id IS NOT NULL
                                    AND (c.payload->>'locked')::boolean) AS locked,
                   count(*) FILTER (WHERE c.kind = %(lock)s AND c.account_id IS NOT NULL
                                    AND NOT (c.payload->>'locked')::boolean) AS unlocked,
                   count(*) FILTER (WHERE c.kind = %(unit)s AND c.unit_id IS NOT NULL) AS units,
                   count(*) FILTER (WHERE c.kind = %(lock)s AND c.unit_id IS NOT NULL) AS units_locked,
                   max(c.payload->>'history') AS marker,
                   -- One reverted Change per batch names the reverted batch: looked up once per
                   -- batch, not joined for each of a lasso's thousand rows.
                   max(c.reverts_id) AS reverts_id,
                   max(c.territory_to_id) FILTER (WHERE c.kind IN (%(moved)s, %(unit)s)) AS territory_to_id,
                   min(c.id) AS first_id
            FROM {table} c
            WHERE c.plan_id = %(plan)s AND c.actor_id = %(actor)s
            GROUP BY c.batch
        ) b
        ORDER BY b.first_id
    """
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "plan": plan.pk,
                "actor": actor.pk,
                "moved": ChangeKind.ACCOUNT_MOVED.value,
                "lock": ChangeKind.LOCK_CHANGED.value,
                "unit": ChangeKind.UNIT_MOVED.value,
            },
        )
        rows = cursor.fetchall()
    summaries = [
        BatchSummary(
            batch=row[0],
            at=row[1].isoformat(),
            kinds=set(row[2]),
            accounts_moved=row[3],
            accounts_locked=row[4],
            accounts_unlocked=row[5],
            units_moved=row[6],
            units_locked=row[7],
            marker=row[8] if row[8] in (UNDO, REDO) else None,
            reverted_batch=row[9],
            territory_to_id=row[10],
        )
        for row in rows
    ]
    codes = dict(
        Territory.objects.filter(
            pk__in={s.territory_to_id for s in summaries if s.territory_to_id}
        ).values_list("pk", "code")
    )
    for summary in summaries:
        summary.territory_code = codes.get(summary.territory_to_id)
    return summaries


def plan_history(*, plan: Plan, actor) -> History:
    """The user's undo and redo stacks in `plan` (last entry = next to undo / redo)."""
    history = History()
    if actor is None or not actor.is_authenticated:
        return history
    for summary in _batches(plan=plan, actor=actor):
        if summary.marker == UNDO:
            if history.undo and history.undo[-1].batch == summary.reverted_batch:
                # A redo batch on the undo stack already carries the original edit's label.
                target = history.undo.pop()
                history.redo.append((summary, target))
        elif summary.marker == REDO:
            if history.redo and history.redo[-1][0].batch == summary.reverted_batch:
                _undo_batch, original = history.redo.pop()
                summary_shown = _relabel(summary, original)
                history.undo.append(summary_shown)
        elif summary.undoable:
            history.undo.append(summary)
            history.redo.clear()
        else:
            history.undo.clear()
            history.redo.clear()
    return history


def _relabel(redo: BatchSummary, original: BatchSummary) -> BatchSummary:
    """A redo batch reverts an undo, so its own counts describe the undo; show the original edit."""
    return BatchSummary(
        batch=redo.batch,
        at=redo.at,
        kinds=redo.kinds,
        accounts_moved=original.accounts_moved,
        accounts_locked=original.accounts_locked,
        accounts_unlocked=original.accounts_unlocked,
        units_moved=original.units_moved,
        units_locked=original.units_locked,
        marker=REDO,
        reverted_batch=redo.reverted_batch,
        territory_to_id=original.territory_to_id,
        territory_code=original.territory_code,
    )


@transaction.atomic
def plan_undo(*, plan: Plan, actor, expected_version: int | None = None) -> dict:
    """Revert the user's last undoable batch in the plan. Returns {"undone": batch, "version"}."""
    plan = _lock_plan(plan, expected_version)
    history = plan_history(plan=plan, actor=actor)
    if not history.undo:
        raise ApplicationError("Nothing to undo: you have made no edit in this plan that can be undone.")
    target = history.undo[-1]
    version = _revert_batch(plan=plan, batch=target.batch, actor=actor, marker=UNDO)
    return {"undone": target.batch, "version": version}


@transaction.atomic
def plan_redo(*, plan: Plan, actor, expected_version: int | None = None) -> dict:
    """Re-apply the edit the user last undid in the plan. Returns {"redone": batch, "version"}."""
    plan = _lock_plan(plan, expected_version)
    history = plan_history(plan=plan, actor=actor)
    if not history.redo:
        raise ApplicationError(
            "Nothing to redo: undo an edit first (a new edit clears what could be redone)."
        )
    undo_batch, original = history.redo[-1]
    version = _revert_batch(plan=plan, batch=undo_batch.batch, actor=actor, marker=REDO)
    return {"redone": original.batch, "version": version}


def _revert_batch(*, plan: Plan, batch: str, actor, marker: str) -> int:
    changes = list(Change.objects.filter(plan=plan, batch=batch).order_by("id"))
    unit_changes = [c for c in changes if c.unit_id is not None]
    account_changes = [
        c
        for c in changes
        if c.account_id is not None and c.kind in (ChangeKind.ACCOUNT_MOVED, ChangeKind.LOCK_CHANGED)
    ]
    new_batch = uuid.uuid4()
    if unit_changes:
        # The accounts of a unit move followed their units through the resolver: restore the units
        # and resolve again, rather than replaying each account.
        records = _revert_units(plan=plan, changes=unit_changes, actor=actor, batch=new_batch, marker=marker)
        plan_materialize(plan=plan, actor=actor, batch=new_batch)
        version = Plan.objects.values_list("version", flat=True).get(pk=plan.pk)
        for record in records:
            record.plan_version = version
        Change.objects.bulk_create(records)
        return version
    if not account_changes:
        raise ApplicationError("That edit holds no account or unit moves to revert.")
    version = _bump(plan)
    _revert_accounts(
        plan=plan, changes=account_changes, actor=actor, batch=new_batch, marker=marker, version=version
    )
    return version


def _conflict(what: str, ids: list) -> ApplicationError:
    shown = ", ".join(map(str, ids[:10])) + (" …" if len(ids) > 10 else "")
    return ApplicationError(
        f"Cannot revert: {len(ids)} {what} changed again since (someone else edited them, or a later "
        f"edit of yours was kept). Nothing was changed. Ids: {shown}.",
        {what: [shown]},
        status=409,
    )


def _revert_accounts(*, plan: Plan, changes: list[Change], actor, batch, marker: str, version: int) -> None:
    ids = [c.account_id for c in changes]
    current = {
        a.account_id: a
        for a in AccountAssignment.objects.select_for_update().filter(
            plan=plan, account_id__in=ids, role=AssignmentRole.PRIMARY
        )
    }
    stale, gone = [], []
    for c in changes:
        now = current.get(c.account_id)
        now_territory = now.territory_id if now else None
        now_locked = now.locked if now else False
        if now_territory != c.territory_to_id or now_locked != bool(c.payload.get("locked", now_locked)):
            stale.append(c.account_id)
        elif c.territory_from_id is None and c.payload.get("from_source"):
            gone.append(c.account_id)  # it had an owner that has since been deleted
    if stale:
        raise _conflict("accounts", stale)
    if gone:
        raise ApplicationError(
            f"Cannot revert: the territory that owned {len(gone)} of these accounts was deleted since.",
            {"accounts": [", ".join(map(str, gone[:10]))]},
        )
    to_delete, to_update, to_create, records = [], [], [], []
    overlays: dict[int, list[int]] = {}  # restored territory -> accounts
    for c in changes:
        now = current.get(c.account_id)
        before_source = now.source if now is not None else None
        was_locked = bool(c.payload.get("was_locked", False))
        source = c.payload.get("from_source") or AssignmentSource.MANUAL
        if c.territory_from_id is None:
            if now is not None:
                to_delete.append(now.pk)
        elif now is None:
            to_create.append(
                AccountAssignment(
                    plan=plan,
                    account_id=c.account_id,
                    territory_id=c.territory_from_id,
                    role=AssignmentRole.PRIMARY,
                    source=source,
                    locked=was_locked,
                )
            )
        else:
            if now.territory_id != c.territory_from_id:
                overlays.setdefault(c.territory_from_id, []).append(c.account_id)
            now.territory_id = c.territory_from_id
            now.locked = was_locked
            now.source = source
            to_update.append(now)
        records.append(
            Change(
                plan=plan,
                actor=actor,
                kind=c.kind,
                batch=batch,
                account_id=c.account_id,
                territory_from_id=c.territory_to_id,
                territory_to_id=c.territory_from_id,
                plan_version=version,
                reverts=c,
                payload={
                    "locked": was_locked,
                    "was_locked": bool(c.payload.get("locked", False)),
                    "from_source": before_source,
                    "history": marker,
                },
            )
        )
    # The log before the owners, as every move does: the dashboards' credit cache then re-credits
    # from today on only (analytics migration 0006).
    Change.objects.bulk_create(records)
    AccountAssignment.objects.filter(pk__in=to_delete).delete()
    # An overlay row for a restored territory would collide with the restored primary row: one
    # DELETE per territory, not per account.
    for territory_id, account_ids in overlays.items():
        AccountAssignment.objects.filter(
            plan=plan, account_id__in=account_ids, territory_id=territory_id, role=AssignmentRole.OVERLAY
        ).delete()
    AccountAssignment.objects.bulk_create(to_create)
    AccountAssignment.objects.bulk_update(to_update, ["territory", "locked", "source", "updated"])
    moved = [r.account_id for r in records if r.kind == ChangeKind.ACCOUNT_MOVED]
    if moved and plan.status == PlanStatus.ACTIVE:
        event_emit(
            ASSIGNMENT_CHANGED,
            {"plan_id": plan.pk, "batch": str(batch), "accounts": len(moved), "account_ids": moved},
        )


def _revert_units(*, plan: Plan, changes: list[Change], actor, batch, marker: str) -> list[Change]:
    """Restore the units; returns the unsaved Changes (their version is known after the rebuild)."""
    current = {
        u.unit_id: u
        for u in UnitAssignment.objects.select_for_update().filter(
            plan=plan, unit_id__in=[c.unit_id for c in changes]
        )
    }
    stale = []
    for c in changes:
        now = current.get(c.unit_id)
        if (now.territory_id if now else None) != c.territory_to_id or (
            now is not None and now.locked != bool(c.payload.get("locked", now.locked))
        ):
            stale.append(c.unit_id)
    if stale:
        raise _conflict("units", stale)
    records = []
    for c in changes:
        now = current.get(c.unit_id)
        was_locked = bool(c.payload.get("was_locked", False))
        if c.territory_from_id is None:
            if now is not None:
                now.delete()
        elif now is None:
            UnitAssignment.objects.create(
                plan=plan,
                unit_id=c.unit_id,
                territory_id=c.territory_from_id,
                source=AssignmentSource.MANUAL,
                locked=was_locked,
            )
        else:
            now.territory_id = c.territory_from_id
            now.locked = was_locked
            now.save(update_fields=["territory", "locked", "updated"])
        records.append(
            Change(
                plan=plan,
                actor=actor,
                kind=c.kind,
                batch=batch,
                unit_id=c.unit_id,
                territory_from_id=c.territory_to_id,
                territory_to_id=c.territory_from_id,
                reverts=c,
                payload={
                    "locked": was_locked,
                    "was_locked": bool(c.payload.get("locked", False)),
                    "history": marker,
                },
            )
        )
    return records


@transaction.atomic
def account_assignments_lock(
    *,
    plan: Plan,
    account_ids: Iterable[int],
    locked: bool,
    actor=None,
    expected_version: int | None = None,
) -> dict:
    """Lock or unlock accounts where they are (a locked account survives rebuilds and the optimizer),
    as one batch of Changes. Unassigned accounts cannot be locked: move them first.
    Returns {"changed": n, "batch": uuid|None, "version": v}."""
    plan = _lock_plan(plan, expected_version)
    ids = sorted({int(i) for i in account_ids})
    if not ids:
        raise ApplicationError("Choose at least one account.", {"account_ids": ["empty"]})
    rows = list(
        AccountAssignment.objects.select_for_update().filter(
            plan=plan, account_id__in=ids, role=AssignmentRole.PRIMARY
        )
    )
    owned = {a.account_id for a in rows}
    unowned = [i for i in ids if i not in owned]
    if unowned and locked:
        raise ApplicationError(
            f"{len(unowned)} account(s) have no territory in this plan and cannot be locked; "
            f"move them to a territory first: {', '.join(map(str, unowned[:10]))}",
            {"account_ids": [f"unassigned: {', '.join(map(str, unowned[:10]))}"]},
        )
    changing = [a for a in rows if a.locked != locked]
    if not changing:
        return {"changed": 0, "batch": None, "version": plan.version}
    batch = uuid.uuid4()
    version = _bump(plan)
    records = []
    for assignment in changing:
        records.append(
            Change(
                plan=plan,
                actor=actor,
                kind=ChangeKind.LOCK_CHANGED,
                batch=batch,
                account_id=assignment.account_id,
                territory_from_id=assignment.territory_id,
                territory_to_id=assignment.territory_id,
                plan_version=version,
                payload={"locked": locked, "was_locked": assignment.locked, "from_source": assignment.source},
            )
        )
        assignment.locked = locked
    AccountAssignment.objects.bulk_update(changing, ["locked", "updated"])
    Change.objects.bulk_create(records)
    return {"changed": len(changing), "batch": str(batch), "version": version}

"""Who owns an account, when, and why; and the feed of ownership changes a CRM follows.

Ownership is read from published plans (active, or archived after their period):
- on a date D: the plan in effect on D, and the account's owner in that plan at the end of D. The
  plan's assignments are today's; moves made in the plan after D are undone on the fly from the
  append-only Change log (each move records the territory it came from).
- the feed lists, in the order they became known, every move of an account in a published plan
  (Changes after its publication and before its successor's) and, for each publication, the
  accounts whose owner (territory code or primary reps) differs between the superseded plan and the
  new one at that moment, and, when a territory's primary reps change in a published plan, its
  accounts (their owner field changes too). Events are only ever appended, and a cursor names the
  last event read, so a CRM resumes exactly where it stopped.

"Why" comes from the one resolver (territories.resolver) when it agrees with the stored assignment,
else from the assignment's source (a planner's hand, the optimizer)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, Rep
from tessera_common.errors import ApplicationError

from .choices import AssignmentRole, AssignmentSource, ChangeKind, MemberRole, PlanStatus
from .models import AccountAssignment, Change, Plan, Territory, TerritoryMembership
from .resolver import _UNSET, STEP_LOCKED, Resolution, resolve_account
from .selectors import plan_active_on, visible_territory_ids

FEED_DEFAULT_LIMIT = 100
FEED_MAX_LIMIT = 1000

KIND_MOVED = "moved"
KIND_PUBLISHED = "published"
KIND_REPS_CHANGED = "reps_changed"
_RANK = {KIND_MOVED: 0, KIND_PUBLISHED: 1, KIND_REPS_CHANGED: 2}

_TABLES = {
    "assignment": AccountAssignment._meta.db_table,
    "change": Change._meta.db_table,
    "plan": Plan._meta.db_table,
    "territory": Territory._meta.db_table,
    "membership": TerritoryMembership._meta.db_table,
    "rep": Rep._meta.db_table,
}

# Owners of one plan at a moment: today's primary assignments with every later move undone (the
# earliest move after the moment tells the territory the account had then).
_OWNERS_AT_SQL = """
SELECT account_id, territory_id FROM (
    SELECT COALESCE(l.account_id, aa.account_id) AS account_id,
           CASE WHEN l.account_id IS NOT NULL THEN l.territory_from_id ELSE aa.territory_id END
               AS territory_id
    FROM (SELECT account_id, territory_id FROM {assignment}
          WHERE plan_id = %(plan)s AND role = %(primary)s {account_filter}) aa
    FULL JOIN (
        SELECT DISTINCT ON (account_id) account_id, territory_from_id FROM {change}
        WHERE plan_id = %(plan)s AND kind = %(moved)s AND account_id IS NOT NULL AND at > %(moment)s
              {account_filter}
        ORDER BY account_id, at, id
    ) l ON l.account_id = aa.account_id
) owners WHERE territory_id IS NOT NULL
"""


def _owners_at_sql(account_filter: str = "") -> str:
    return _OWNERS_AT_SQL.format(**_TABLES, account_filter=account_filter)


def _day_start(date: dt.date) -> dt.datetime:
    """The first instant of `date` in the project's time zone (Changes carry timestamps)."""
    return timezone.make_aware(dt.datetime.combine(date, dt.time.min))


def _day_end(date: dt.date) -> dt.datetime:
    """The first instant after `date`; the last representable day has no "after": its own end."""
    if date >= dt.date.max:
        return timezone.make_aware(dt.datetime.combine(dt.date.max, dt.time.max))
    return _day_start(date + dt.timedelta(days=1))


def _territory_ref(territory: Territory | None) -> dict | None:
    if territory is None:
        return None
    return {"id": territory.pk, "code": territory.code, "name": territory.name}


@dataclass
class Card:
    """What an answer says about a territory besides its id, code and name."""

    path: list[str]
    path_codes: list[str]
    reps: list[dict]


EMPTY_CARD = Card([], [], [])


def territory_cards(territory_ids) -> dict[int, Card]:
    """Path (names and codes from the root down) and reps (primary first) of each territory, in one
    query: lead routing answers with these on every request, so they cost one round trip."""
    ids = [i for i in set(territory_ids) if i is not None]
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH RECURSIVE up(start_id, id, parent_id, name, code, depth) AS (
                    SELECT t.id, t.id, t.parent_id, t.name, t.code, 0 FROM {_TABLES["territory"]} t
                    WHERE t.id = ANY(%(ids)s)
                    UNION ALL
                    SELECT up.start_id, t.id, t.parent_id, t.name, t.code, up.depth + 1
                    FROM {_TABLES["territory"]} t JOIN up ON t.id = up.parent_id WHERE up.depth < 50
                ), paths AS (
                    SELECT start_id, array_agg(name ORDER BY depth DESC) AS names,
                           array_agg(code ORDER BY depth DESC) AS codes
                    FROM up GROUP BY start_id
                )
                SELECT paths.start_id, paths.names, paths.codes, COALESCE((
                    SELECT json_agg(json_build_object(
                               'id', r.id, 'external_id', r.external_id, 'name', r.name,
                               'email', r.email, 'role', m.role, 'share', m.share::float8,
                               'capacity_fte', r.capacity_fte::float8)
                           ORDER BY CASE m.role WHEN %(primary)s THEN 0 WHEN %(overlay)s THEN 1 ELSE 2 END,
                                    m.share DESC, r.name, r.id)
                    FROM {_TABLES["membership"]} m JOIN {_TABLES["rep"]} r ON r.id = m.rep_id
                    WHERE m.territory_id = paths.start_id), '[]')
                FROM paths""",
            {"ids": ids, "primary": MemberRole.PRIMARY, "overlay": MemberRole.OVERLAY},
        )
        cards = {}
        for territory_id, names, codes, reps in cursor.fetchall():
            cards[territory_id] = Card(
                list(names), list(codes), json.loads(reps) if isinstance(reps, str) else reps
            )
        return cards


@dataclass
class Explained:
    """An owner and the reason, in the shape route/ and ownership/ answer with."""

    territory: Territory | None
    step: str
    explanation: str
    rule: dict | None = None
    unit: dict | None = None
    locked: bool = False

    def as_dict(self) -> dict:
        return {
            "territory": _territory_ref(self.territory),
            "step": self.step,
            "rule": self.rule,
            "unit": self.unit,
            "locked": self.locked,
            "explanation": self.explanation,
        }


def explain_resolution(resolution: Resolution) -> Explained:
    rule = resolution.rule
    unit = resolution.unit
    return Explained(
        territory=resolution.territory,
        step=resolution.step,
        explanation=resolution.explanation,
        rule={"id": rule.pk, "name": rule.name, "priority": rule.priority} if rule else None,
        unit={"id": unit.pk, "code": unit.code, "name": unit.name, "level": unit.level} if unit else None,
        locked=resolution.step == STEP_LOCKED,
    )


def assignment_explained(
    *,
    plan: Plan,
    account: Account,
    assignment: AccountAssignment | None,
    stored_wins_unassigned: bool,
    rules=None,
    unit=_UNSET,
) -> Explained:
    """The owner of a stored account in `plan` and why. The stored assignment is the owner; the
    resolver explains it when it reaches the same territory. An account without an assignment is
    unassigned (`stored_wins_unassigned`, for ownership) or gets the resolver's answer (routing:
    an account imported since the plan was last rebuilt lands where the resolver says)."""
    resolution = resolve_account(plan=plan, account=account, _rules=rules, _unit=unit)
    if assignment is None:
        if not stored_wins_unassigned:
            return explain_resolution(resolution)
        note = ""
        if resolution.territory is not None:
            note = (
                f" The rules and geography would now give {resolution.territory.code} "
                f"{resolution.territory.name}; the plan has not been rebuilt since."
            )
        return Explained(
            territory=None, step="unassigned", explanation=f"Unassigned in plan '{plan.name}'.{note}"
        )
    territory = assignment.territory
    if resolution.territory is not None and resolution.territory.pk == territory.pk:
        explained = explain_resolution(resolution)
        explained.locked = assignment.locked
        return explained
    lock = " and locked" if assignment.locked else ""
    if assignment.source == AssignmentSource.MANUAL:
        why = f"Assigned by hand to {territory.code} {territory.name}{lock}."
    elif assignment.source == AssignmentSource.OPTIMIZER:
        why = f"Placed in {territory.code} {territory.name} by the balance optimizer{lock}."
    else:
        why = (
            f"Assigned to {territory.code} {territory.name} by {assignment.get_source_display().lower()}"
            f" when the plan was last rebuilt{lock}."
        )
    if resolution.territory is None:
        why += " Rules and geography alone would leave it unassigned."
    else:
        why += (
            f" Rules and geography alone would give {resolution.territory.code} {resolution.territory.name}."
        )
    return Explained(
        territory=territory,
        step=STEP_LOCKED if assignment.locked else assignment.source,
        explanation=why,
        locked=assignment.locked,
    )


def _owner_at(plan: Plan, account: Account, moment: dt.datetime) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            _owners_at_sql("AND account_id = %(account)s"),
            {
                "plan": plan.pk,
                "primary": AssignmentRole.PRIMARY,
                "moved": ChangeKind.ACCOUNT_MOVED,
                "moment": moment,
                "account": account.pk,
            },
        )
        row = cursor.fetchone()
    return row[1] if row else None


def _plan_ref(plan: Plan | None) -> dict | None:
    if plan is None:
        return None
    return {
        "id": plan.pk,
        "name": plan.name,
        "status": plan.status,
        "effective_from": plan.effective_from,
        "effective_to": plan.effective_to,
    }


def _owner_entry(plan: Plan, account: Account, territory_id: int | None, moment: dt.datetime) -> dict:
    """Owner `territory_id` of `account` in `plan` at `moment`, with reps, path and why."""
    current = (
        AccountAssignment.objects.filter(plan=plan, account=account, role=AssignmentRole.PRIMARY)
        .select_related("territory")
        .first()
    )
    if (current.territory_id if current else None) == territory_id:
        explained = assignment_explained(
            plan=plan, account=account, assignment=current, stored_wins_unassigned=True
        )
    else:
        # The owner then differs from today's: the move that put it there says why.
        territory = Territory.objects.filter(pk=territory_id).first() if territory_id else None
        change = (
            Change.objects.filter(
                plan=plan,
                account=account,
                kind=ChangeKind.ACCOUNT_MOVED,
                at__lte=moment,
                at__gte=plan.published_at,
            )
            .select_related("actor")
            .order_by("-at", "-id")
            .first()
        )
        if territory is None:
            why = f"Unassigned in plan '{plan.name}' then."
        elif change is not None and change.territory_to_id == territory_id:
            who = f" by {change.actor.username}" if change.actor else ""
            why = f"Moved to {territory.code} {territory.name} on {timezone.localdate(change.at)}{who}."
        else:
            why = f"Owned by {territory.code} {territory.name} when plan '{plan.name}' took effect."
        explained = Explained(territory=territory, step="history", explanation=why)
    card = territory_cards([territory_id]).get(territory_id, EMPTY_CARD)
    return {
        **explained.as_dict(),
        "path": card.path,
        "path_codes": card.path_codes,
        "reps": card.reps,
        "plan": _plan_ref(plan),
    }


def account_ownership_on(*, account: Account, date: dt.date) -> dict:
    """The owning territory and reps of `account` on `date`, and why (null when no plan was in effect)."""
    plan = plan_active_on(date=date)
    if plan is None:
        return {
            "account": _account_ref(account),
            "at": date,
            "plan": None,
            "territory": None,
            "path": [],
            "path_codes": [],
            "reps": [],
            "step": "no_plan",
            "rule": None,
            "unit": None,
            "locked": False,
            "explanation": f"No published plan was in effect on {date}.",
        }
    moment = max(_day_end(date), plan.published_at)
    territory_id = _owner_at(plan, account, moment)
    return {"account": _account_ref(account), "at": date, **_owner_entry(plan, account, territory_id, moment)}


def _account_ref(account: Account) -> dict:
    return {"id": account.pk, "external_id": account.external_id, "name": account.name}


def published_plans() -> list[Plan]:
    return list(
        Plan.objects.filter(
            status__in=[PlanStatus.ACTIVE, PlanStatus.ARCHIVED],
            published_at__isnull=False,
            effective_from__isnull=False,
        ).order_by("effective_from", "id")
    )


def account_ownership_timeline(*, account: Account) -> dict:
    """Every period of ownership of `account` across published plans, oldest first: one entry per
    plan period, split where the account moved within the plan."""
    periods = []
    for plan in published_plans():
        start_moment = max(_day_start(plan.effective_from), plan.published_at)
        owner = _owner_at(plan, account, start_moment)
        moves = Change.objects.filter(
            plan=plan, account=account, kind=ChangeKind.ACCOUNT_MOVED, at__gt=start_moment
        ).order_by("at", "id")
        segments = [(plan.effective_from, owner, start_moment)]
        for change in moves:
            day = max(timezone.localdate(change.at), plan.effective_from)
            if plan.effective_to is not None and day >= plan.effective_to:
                break
            if change.territory_to_id == segments[-1][1]:
                continue
            if day == segments[-1][0]:
                segments[-1] = (day, change.territory_to_id, change.at)
            else:
                segments.append((day, change.territory_to_id, change.at))
        for index, (start, territory_id, moment) in enumerate(segments):
            end = segments[index + 1][0] if index + 1 < len(segments) else plan.effective_to
            periods.append(
                {
                    "from": start,
                    "to": end,
                    **_owner_entry(plan, account, territory_id, max(moment, start_moment)),
                }
            )
    return {"account": _account_ref(account), "timeline": periods}


# ---------------------------------------------------------------------------------------------
# The feed


@dataclass(frozen=True, order=True)
class FeedKey:
    """Where an event sits in the feed: when it became known, then a stable tie-break."""

    at: dt.datetime
    rank: int
    first: int
    second: int

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), self.rank, self.first, self.second]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> FeedKey:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            at, rank, first, second = json.loads(base64.urlsafe_b64decode(padded.encode()))
            moment = dt.datetime.fromisoformat(at)
            if moment.tzinfo is None or not all(isinstance(v, int) for v in (rank, first, second)):
                raise ValueError
            return cls(moment, rank, first, second)
        except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError):
            raise ApplicationError(
                "The cursor is not one this feed gave out; start without a cursor or use `next_cursor`.",
                {"cursor": ["invalid cursor"]},
            ) from None


_ORIGIN = FeedKey(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), -1, 0, 0)


def _moves_after(key: FeedKey, limit: int, territory_ids: list[int] | None) -> list[tuple]:
    scope = (
        ""
        if territory_ids is None
        else "AND (c.territory_from_id = ANY(%(ids)s) OR c.territory_to_id = ANY(%(ids)s))"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT c.at, c.id, c.account_id, c.plan_id, c.territory_from_id, c.territory_to_id,
                       GREATEST((c.at AT TIME ZONE %(tz)s)::date, p.effective_from), c.batch
                FROM {_TABLES["change"]} c JOIN {_TABLES["plan"]} p ON p.id = c.plan_id
                WHERE c.kind = %(moved)s AND c.account_id IS NOT NULL
                  AND p.published_at IS NOT NULL AND p.effective_from IS NOT NULL
                  AND p.status IN (%(active)s, %(archived)s)
                  AND c.at >= p.published_at
                  AND {_NOT_SUPERSEDED_SQL.format(plan=_TABLES["plan"])}
                  AND (c.at, 0, c.id, c.account_id) > (%(at)s, %(rank)s, %(first)s, %(second)s)
                  {scope}
                ORDER BY c.at, c.id
                LIMIT %(limit)s""",
            {
                "tz": settings.TIME_ZONE,
                "moved": ChangeKind.ACCOUNT_MOVED,
                "active": PlanStatus.ACTIVE,
                "archived": PlanStatus.ARCHIVED,
                "at": key.at,
                "rank": key.rank,
                "first": key.first,
                "second": key.second,
                "limit": limit,
                "ids": territory_ids or [],
            },
        )
        return [
            (
                FeedKey(at, _RANK[KIND_MOVED], change_id, account_id),
                KIND_MOVED,
                plan_id,
                account_id,
                old,
                new,
                day,
                batch,
                None,
            )
            for at, change_id, account_id, plan_id, old, new, day, batch in cursor.fetchall()
        ]


def _publication_after(
    plan: Plan, previous: Plan | None, key: FeedKey, limit: int, territory_ids: list[int] | None
) -> list[tuple]:
    """Accounts whose owner differs between `previous` and `plan` when `plan` was published."""
    at = plan.published_at
    this_key = FeedKey(at, _RANK[KIND_PUBLISHED], plan.pk, 0)
    if (this_key.at, this_key.rank, this_key.first) < (key.at, key.rank, key.first):
        return []
    after_account = key.second if (key.at, key.rank, key.first) == (at, this_key.rank, plan.pk) else 0
    scope = (
        ""
        if territory_ids is None
        else "AND (n.territory_id = ANY(%(ids)s) OR o.territory_id = ANY(%(ids)s))"
    )
    owners = _owners_at_sql()
    previous_owners = (
        owners.replace("%(plan)s", "%(previous)s")
        if previous is not None
        else "SELECT NULL::bigint AS account_id, NULL::bigint AS territory_id WHERE false"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH n AS ({owners}), o AS ({previous_owners}),
                -- What a CRM's owner field follows: the territory code and its primary reps.
                owner_key AS (
                    SELECT t.id, t.code || '|' || COALESCE(
                        string_agg(m.rep_id::text, ',' ORDER BY m.rep_id)
                        FILTER (WHERE m.role = %(primary_member)s), '') AS owner
                    FROM {_TABLES["territory"]} t
                    LEFT JOIN {_TABLES["membership"]} m ON m.territory_id = t.id
                    WHERE t.plan_id IN (%(plan)s, %(previous)s)
                    GROUP BY t.id
                )
                SELECT COALESCE(n.account_id, o.account_id) AS account_id, o.territory_id, n.territory_id
                FROM n FULL JOIN o ON o.account_id = n.account_id
                LEFT JOIN owner_key nk ON nk.id = n.territory_id
                LEFT JOIN owner_key ok ON ok.id = o.territory_id
                WHERE nk.owner IS DISTINCT FROM ok.owner
                  AND COALESCE(n.account_id, o.account_id) > %(after)s
                  {scope}
                ORDER BY 1
                LIMIT %(limit)s""",
            {
                "plan": plan.pk,
                "previous": previous.pk if previous else 0,
                "primary": AssignmentRole.PRIMARY,
                "primary_member": MemberRole.PRIMARY,
                "moved": ChangeKind.ACCOUNT_MOVED,
                "moment": at,
                "after": after_account,
                "limit": limit,
                "ids": territory_ids or [],
            },
        )
        return [
            (
                FeedKey(at, _RANK[KIND_PUBLISHED], plan.pk, account_id),
                KIND_PUBLISHED,
                plan.pk,
                account_id,
                old,
                new,
                plan.effective_from,
                None,
                None,
            )
            for account_id, old, new in cursor.fetchall()
        ]


# Edits to a plan after its successor was published change no one's owner. The test is on when
# the successor was published (fixed), not on dates, so that the feed only ever grows: a plan
# published later for a past date hides nothing already listed.
_NOT_SUPERSEDED_SQL = """NOT EXISTS (
    SELECT 1 FROM {plan} s
    WHERE s.id <> p.id AND s.published_at IS NOT NULL AND s.published_at <= c.at
      AND p.effective_to IS NOT NULL AND s.effective_from = p.effective_to)"""


def _primary_ids(members) -> list[int]:
    if not isinstance(members, list):
        return []
    return sorted(
        m["rep"]
        for m in members
        if isinstance(m, dict) and m.get("role") == MemberRole.PRIMARY and "rep" in m
    )


def _reps_changed_after(key: FeedKey, limit: int, territory_ids: list[int] | None) -> list[tuple]:
    """A territory's primary reps changed in a published plan: every account it owned then gets
    an event (the CRM's owner field changes although the territory does not)."""
    scope = "" if territory_ids is None else "AND c.territory_to_id = ANY(%(ids)s)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT c.at, c.id, c.plan_id, c.territory_to_id, c.payload,
                       GREATEST((c.at AT TIME ZONE %(tz)s)::date, p.effective_from)
                FROM {_TABLES["change"]} c JOIN {_TABLES["plan"]} p ON p.id = c.plan_id
                WHERE c.kind = %(kind)s AND c.territory_to_id IS NOT NULL
                  AND p.published_at IS NOT NULL AND p.effective_from IS NOT NULL
                  AND p.status IN (%(active)s, %(archived)s)
                  AND c.at >= p.published_at
                  AND {_NOT_SUPERSEDED_SQL.format(plan=_TABLES["plan"])}
                  AND (c.at, %(rank)s, c.id) >= (%(at)s, %(key_rank)s, %(first)s)
                  {scope}
                ORDER BY c.at, c.id
                LIMIT %(limit)s""",
            {
                "tz": settings.TIME_ZONE,
                "kind": ChangeKind.MEMBERSHIP_CHANGED,
                "active": PlanStatus.ACTIVE,
                "archived": PlanStatus.ARCHIVED,
                "rank": _RANK[KIND_REPS_CHANGED],
                "at": key.at,
                "key_rank": key.rank,
                "first": key.first,
                "limit": limit,
                "ids": territory_ids or [],
            },
        )
        changes = cursor.fetchall()
        events: list[tuple] = []
        for at, change_id, plan_id, territory_id, payload, day in changes:
            if isinstance(payload, str | bytes):  # raw cursors hand jsonb back as text
                payload = json.loads(payload)
            payload = payload if isinstance(payload, dict) else {}
            if "before" in payload and "after" in payload:
                # Recorded by territory_members_set: only a change of primary reps changes an owner.
                if _primary_ids(payload["before"]) == _primary_ids(payload["after"]):
                    continue
                reps = (payload["before"], payload["after"])
            else:
                # An edit in the admin records no before/after: announce the territory's reps as
                # they are now, which is what a CRM syncing owner fields needs to end up with.
                reps = None
            this = (at, _RANK[KIND_REPS_CHANGED], change_id)
            after_account = key.second if this == (key.at, key.rank, key.first) else 0
            cursor.execute(
                f"""SELECT account_id FROM ({_owners_at_sql()}) owners
                    WHERE territory_id = %(territory)s AND account_id > %(after)s
                    ORDER BY account_id LIMIT %(limit)s""",
                {
                    "plan": plan_id,
                    "primary": AssignmentRole.PRIMARY,
                    "moved": ChangeKind.ACCOUNT_MOVED,
                    "moment": at,
                    "territory": territory_id,
                    "after": after_account,
                    "limit": limit - len(events),
                },
            )
            events.extend(
                (
                    FeedKey(at, _RANK[KIND_REPS_CHANGED], change_id, account_id),
                    KIND_REPS_CHANGED,
                    plan_id,
                    account_id,
                    territory_id,
                    territory_id,
                    day,
                    None,
                    reps,
                )
                for (account_id,) in cursor.fetchall()
            )
            if len(events) >= limit:
                break
    return events


def _reps_from_payload(members, known: dict[int, dict]) -> list[dict]:
    """The reps a Change recorded (ids, roles, shares), with today's details of each rep."""
    from accounts.models import Rep

    rows = []
    for m in members if isinstance(members, list) else []:
        if not isinstance(m, dict) or "rep" not in m:
            continue
        rep = known.get(m["rep"])
        if rep is None:
            found = Rep.objects.filter(pk=m["rep"]).first()
            rep = known[m["rep"]] = (
                {
                    "external_id": found.external_id,
                    "email": found.email,
                    "capacity_fte": float(found.capacity_fte),
                }
                if found
                else {"external_id": None, "email": "", "capacity_fte": None}
            )
        try:
            share = float(m.get("share", 1))
        except (TypeError, ValueError):
            share = None
        rows.append(
            {
                "id": m["rep"],
                "external_id": rep["external_id"],
                "name": m.get("name", ""),
                "email": rep["email"],
                "role": m.get("role", ""),
                "share": share,
                "capacity_fte": rep["capacity_fte"],
            }
        )
    order = {MemberRole.PRIMARY: 0, MemberRole.OVERLAY: 1}
    return sorted(rows, key=lambda r: order.get(r["role"], 2))


def _feed_scope(user, plans: list[Plan]) -> list[int] | None:
    if user.sees_everything:
        return None
    ids: list[int] = []
    for plan in plans:
        ids.extend(visible_territory_ids(user=user, plan=plan) or [])
    return ids


def ownership_changes(*, user, cursor: str | None = None, limit: int = FEED_DEFAULT_LIMIT) -> dict:
    """One page of the ownership-change feed after `cursor` (from the start without one)."""
    key = FeedKey.decode(cursor) if cursor else _ORIGIN
    plans = published_plans()
    territory_ids = _feed_scope(user, plans)
    events = _moves_after(key, limit + 1, territory_ids)
    by_end = {p.effective_to: p for p in plans if p.effective_to is not None}
    for plan in plans:
        if plan.published_at < key.at:
            continue
        previous = by_end.get(plan.effective_from)
        if previous is not None and previous.pk == plan.pk:
            previous = None
        events.extend(_publication_after(plan, previous, key, limit + 1, territory_ids))
    events.extend(_reps_changed_after(key, limit + 1, territory_ids))
    events.sort(key=lambda e: e[0])
    page, more = events[:limit], len(events) > limit
    return {
        "results": _feed_rows(page, {p.pk: p for p in plans}),
        "next_cursor": page[-1][0].encode() if page else cursor,
        "has_more": more,
    }


def _feed_rows(page: list[tuple], plans: dict[int, Plan]) -> list[dict]:
    account_ids = {e[3] for e in page}
    territory_ids = {t for e in page for t in (e[4], e[5]) if t is not None}
    accounts = {a.pk: a for a in Account.objects.filter(pk__in=account_ids).only("id", "external_id", "name")}
    territories = {t.pk: t for t in Territory.objects.filter(pk__in=territory_ids)}
    cards = territory_cards(territory_ids)

    def side(territory_id):
        territory = territories.get(territory_id)
        card = cards.get(territory_id, EMPTY_CARD)
        return {"territory": _territory_ref(territory), "path": card.path, "reps": list(card.reps)}

    rep_details: dict[int, dict] = {r["id"]: r for card in cards.values() for r in card.reps}
    rows = []
    for key, kind, plan_id, account_id, old, new, day, batch, recorded_reps in page:
        account = accounts.get(account_id)
        plan = plans.get(plan_id)
        old_side, new_side = side(old), side(new)
        if recorded_reps is not None:
            old_side["reps"] = _reps_from_payload(recorded_reps[0], rep_details)
            new_side["reps"] = _reps_from_payload(recorded_reps[1], rep_details)
        rows.append(
            {
                "id": key.encode(),
                "kind": kind,
                "recorded_at": key.at,
                "effective_date": day,
                "account": _account_ref(account)
                if account
                else {"id": account_id, "external_id": None, "name": None},
                "old": old_side,
                "new": new_side,
                "plan": {"id": plan_id, "name": plan.name if plan else None},
                "batch": str(batch) if batch else None,
            }
        )
    return rows


def account_visible(*, user, account: Account, plan: Plan | None) -> bool:
    """Whether the user may ask about `account`: everyone who sees everything; others when one of
    their territories owns it in `plan` (the plan in effect, when asking about a date)."""
    if user.sees_everything:
        return True
    if plan is None:
        return False
    ids = visible_territory_ids(user=user, plan=plan) or []
    return (
        AccountAssignment.objects.filter(plan=plan, account=account).filter(Q(territory_id__in=ids)).exists()
    )

"""The one resolver: which territory owns an account in a plan, and why.

Order (DESIGN.md): a locked override, the parent account's territory (corporate families stay
together unless a child is locked elsewhere), assignment rules by priority, the finest assigned
geography unit that contains the account, else unassigned.

Two entry points share these semantics:
- `resolve_account` / `resolve_facts` answer for one account or an unsaved lead (lead routing,
  "why is this account here?");
- `plan_materialize` resolves every account of a plan in a handful of set-based SQL statements.
The rule conditions themselves are defined once in territories.rules; this module turns them into
Python predicates (one account) and ORM filters (all accounts), and tests check the two agree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.gis.geos import Point
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Lower, Trim

from accounts.models import Account
from tessera_common.db import analyze_after_large_write
from tessera_common.errors import ApplicationError
from tessera_common.events import ASSIGNMENT_CHANGED, event_emit

from . import rules as rule_conditions
from .choices import UNIT_LEVEL_PRECEDENCE, AssignmentRole, AssignmentSource, ChangeKind, PlanStatus
from .models import (
    AccountAssignment,
    AssignmentRule,
    Change,
    GeoUnit,
    Plan,
    RulePostalCode,
    Territory,
    UnitAssignment,
)

STEP_LOCKED = "locked"
STEP_PARENT = AssignmentSource.PARENT.value
STEP_RULE = AssignmentSource.RULE.value
STEP_GEOGRAPHY = AssignmentSource.GEOGRAPHY.value
STEP_UNASSIGNED = "unassigned"

# Corporate families deeper than this are data errors (or cycles); the rest of the chain is ignored.
MAX_FAMILY_DEPTH = 20


@dataclass
class Resolution:
    """The resolver's answer: the owning territory (None = unassigned), the step that decided, and
    a one-line explanation a planner or a CRM user can read."""

    territory: Territory | None
    step: str
    explanation: str
    rule: AssignmentRule | None = None
    unit: GeoUnit | None = None
    parent_account: Account | None = None
    assignment: AccountAssignment | None = None

    @property
    def source(self) -> str | None:
        """The AccountAssignment.source this resolution would be stored with."""
        if self.territory is None:
            return None
        if self.step == STEP_LOCKED and self.assignment is not None:
            return self.assignment.source
        return self.step


@dataclass
class _CompiledRule:
    rule: AssignmentRule
    conditions: list[rule_conditions.Condition]
    postal_list: frozenset[str] = field(default_factory=frozenset)


# ---------------------------------------------------------------------------------------------
# Rules → ORM filters


def _text_expression(condition: rule_conditions.Condition):
    if condition.is_attribute:
        return Lower(Trim(KeyTextTransform(condition.attribute_key, "attributes")))
    return Lower(Trim(F(condition.field)))


def rule_filter(queryset: QuerySet, rule: AssignmentRule, conditions=None) -> QuerySet:
    """Narrow an Account queryset to the accounts `rule` matches (same semantics as rules.py)."""
    conditions = rule_conditions.parse_conditions(rule.conditions) if conditions is None else conditions
    for index, condition in enumerate(conditions):
        if condition.op == rule_conditions.POSTAL_LIST_OP:
            queryset = queryset.filter(
                postal_code__in=RulePostalCode.objects.filter(rule_id=rule.pk).values("postal_code")
            )
            continue
        if condition.is_number:
            column = condition.field
        else:
            column = f"_rule_{index}"
            queryset = queryset.alias(**{column: _text_expression(condition)})
        value = condition.value
        lookup = {
            "eq": "exact",
            "ne": "exact",
            "in": "in",
            "not_in": "in",
            "prefix": "startswith",
            "gte": "gte",
            "lte": "lte",
            "gt": "gt",
            "lt": "lt",
        }[condition.op]
        q = Q(**{f"{column}__{lookup}": list(value) if isinstance(value, tuple) else value})
        if condition.op in rule_conditions.NEGATIVE_OPS:
            # A missing value matches the negative operators, as in rules.condition_matches.
            q = ~q | Q(**{f"{column}__isnull": True})
        elif not condition.is_number:
            q &= Q(**{f"{column}__isnull": False})
        queryset = queryset.filter(q)
    return queryset


def _compile_rules(plan: Plan) -> list[_CompiledRule]:
    compiled = []
    rules = (
        AssignmentRule.objects.filter(plan=plan, active=True)
        .select_related("territory")
        .order_by("priority", "id")
    )
    for rule in rules:
        try:
            conditions = rule_conditions.parse_conditions(rule.conditions)
        except rule_conditions.RuleConditionError as exc:
            raise ApplicationError(
                f"Rule '{rule.name}' (priority {rule.priority}) is invalid: {exc}",
                {"rules": [f"{rule.pk}: {exc}"]},
            ) from None
        postal_list: frozenset[str] = frozenset()
        if any(c.op == rule_conditions.POSTAL_LIST_OP for c in conditions):
            postal_list = frozenset(
                rule_conditions.normalize_postal(code)
                for code in RulePostalCode.objects.filter(rule=rule).values_list("postal_code", flat=True)
            )
        compiled.append(_CompiledRule(rule, conditions, postal_list))
    return compiled


# ---------------------------------------------------------------------------------------------
# One account


# Every field a rule may test, so one-account resolution sees what the SQL path sees.
ACCOUNT_FACT_FIELDS = (*rule_conditions.TEXT_FIELDS, *rule_conditions.NUMBER_FIELDS, "attributes")


def account_facts(account: Account) -> dict[str, Any]:
    facts = {name: getattr(account, name) for name in ACCOUNT_FACT_FIELDS}
    facts["location"] = account.location
    return facts


def _containing_unit(plan: Plan, location: Point | None) -> tuple[GeoUnit, Territory] | None:
    if location is None:
        return None
    candidates = (
        UnitAssignment.objects.filter(plan=plan, unit__geom__covers=location)
        .select_related("unit", "territory")
        .defer("unit__geom", "unit__geom_simplified")
        .order_by("unit__code")
    )
    best = None
    for assignment in candidates:
        rank = UNIT_LEVEL_PRECEDENCE.get(assignment.unit.level, 0)
        if best is None or rank > best[0]:
            best = (rank, assignment)
    return (best[1].unit, best[1].territory) if best else None


# resolve_facts(_unit=...) not given: look the unit up.
_UNSET: Any = object()


def containing_units(plan: Plan, locations: list[Point | None]) -> list[tuple[GeoUnit, Territory] | None]:
    """`_containing_unit` for many locations in one query (lead routing in batches): for each, the
    finest assigned unit of `plan` that covers it (equal fineness: the lowest code), or None."""
    points = [(i, p.x, p.y) for i, p in enumerate(locations) if p is not None]
    found: list[tuple[GeoUnit, Territory] | None] = [None] * len(locations)
    if not points:
        return found
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT DISTINCT ON (p.i) p.i, ua.unit_id, ua.territory_id
                FROM unnest(%(i)s::int[], %(x)s::float8[], %(y)s::float8[]) AS p(i, x, y)
                JOIN {GeoUnit._meta.db_table} u ON ST_Covers(u.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326))
                JOIN {UnitAssignment._meta.db_table} ua ON ua.unit_id = u.id AND ua.plan_id = %(plan)s
                ORDER BY p.i, array_position(%(levels)s::text[], u.level::text) DESC NULLS LAST, u.code""",
            {
                "i": [i for i, _, _ in points],
                "x": [x for _, x, _ in points],
                "y": [y for _, _, y in points],
                "plan": plan.pk,
                "levels": _LEVELS_COARSE_TO_FINE,
            },
        )
        rows = cursor.fetchall()
    units = GeoUnit.objects.defer("geom", "geom_simplified").in_bulk({unit_id for _, unit_id, _ in rows})
    territories = Territory.objects.in_bulk({territory_id for _, _, territory_id in rows})
    for i, unit_id, territory_id in rows:
        found[i] = (units[unit_id], territories[territory_id])
    return found


def resolve_facts(
    *,
    plan: Plan,
    facts: Mapping[str, Any],
    parent: Account | None = None,
    _rules: list[_CompiledRule] | None = None,
    _depth: int = 0,
    _unit: Any = _UNSET,
) -> Resolution:
    """Resolve an account that may not be stored (a lead): parent, rules, geography, unassigned.

    `facts` holds Account field names plus `location` (a Point in SRID 4326 or None)."""
    compiled = _compile_rules(plan) if _rules is None else _rules
    if parent is not None and _depth < MAX_FAMILY_DEPTH:
        parent_resolution = _resolve(plan=plan, account=parent, rules=compiled, depth=_depth + 1)
        if parent_resolution.territory is not None:
            territory = parent_resolution.territory
            return Resolution(
                territory=territory,
                step=STEP_PARENT,
                parent_account=parent,
                explanation=(
                    f"Follows its parent account {parent.name} ({parent.external_id}) "
                    f"in {territory.code} {territory.name}."
                ),
            )
    for item in compiled:
        if rule_conditions.rule_matches(item.conditions, facts, item.postal_list):
            territory = item.rule.territory
            because = "; ".join(c.describe() for c in item.conditions) or "it applies to every account"
            return Resolution(
                territory=territory,
                step=STEP_RULE,
                rule=item.rule,
                explanation=(
                    f"Rule '{item.rule.name}' (priority {item.rule.priority}) sends it to "
                    f"{territory.code} {territory.name}: {because}."
                ),
            )
    # `_unit`: the answer of containing_units() for this location, when the caller batched it.
    found = _containing_unit(plan, facts.get("location")) if _unit is _UNSET else _unit
    if found is not None:
        unit, territory = found
        return Resolution(
            territory=territory,
            step=STEP_GEOGRAPHY,
            unit=unit,
            explanation=(
                f"Located in {unit.name} ({unit.get_level_display().lower()} {unit.code}), "
                f"which belongs to {territory.code} {territory.name}."
            ),
        )
    if facts.get("location") is None:
        why = "It has no location and no rule matches it."
    else:
        why = "No rule matches it and no geography unit assigned in this plan contains its location."
    return Resolution(territory=None, step=STEP_UNASSIGNED, explanation=f"Unassigned: {why}")


def _resolve(
    *, plan: Plan, account: Account, rules: list[_CompiledRule], depth: int, unit: Any = _UNSET
) -> Resolution:
    locked = (
        AccountAssignment.objects.filter(plan=plan, account=account, role=AssignmentRole.PRIMARY, locked=True)
        .select_related("territory")
        .first()
    )
    if locked is not None:
        territory = locked.territory
        return Resolution(
            territory=territory,
            step=STEP_LOCKED,
            assignment=locked,
            explanation=(
                f"Locked to {territory.code} {territory.name} ({locked.get_source_display().lower()} "
                f"assignment, locked on {locked.updated:%Y-%m-%d})."
            ),
        )
    parent = account.parent if account.parent_id and _family_reaches_root(account) else None
    return resolve_facts(
        plan=plan, facts=account_facts(account), parent=parent, _rules=rules, _depth=depth, _unit=unit
    )


def _family_reaches_root(account: Account) -> bool:
    """Whether the parent chain ends at a root within MAX_FAMILY_DEPTH steps (as in the SQL)."""
    seen = {account.pk}
    parent_id = account.parent_id
    for _ in range(MAX_FAMILY_DEPTH):
        if parent_id is None:
            return True
        if parent_id in seen:
            return False
        seen.add(parent_id)
        parent_id = Account.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return parent_id is None


def resolve_account(
    *, plan: Plan, account: Account, _rules: list[_CompiledRule] | None = None, _unit: Any = _UNSET
) -> Resolution:
    """Which territory owns `account` in `plan`, and why (the full resolution order).
    `_rules`: the plan's rules already compiled (lead routing reuses them across requests);
    `_unit`: containing_units()'s answer for the account's location (batches)."""
    rules = _compile_rules(plan) if _rules is None else _rules
    return _resolve(plan=plan, account=account, rules=rules, depth=0, unit=_unit)


# ---------------------------------------------------------------------------------------------
# All accounts of a plan, set-based

# Unit levels from coarse to fine: ORDER BY array_position(levels, u.level) DESC picks the finest.
_LEVELS_COARSE_TO_FINE = [
    level for level, _rank in sorted(UNIT_LEVEL_PRECEDENCE.items(), key=lambda kv: kv[1])
]


@dataclass
class MaterializeResult:
    plan_id: int
    accounts: int
    by_source: dict[str, int]
    unassigned: int
    moved: int
    seconds: float
    batch: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "accounts": self.accounts,
            "by_source": self.by_source,
            "unassigned": self.unassigned,
            "moved": self.moved,
            "seconds": round(self.seconds, 3),
            "batch": self.batch,
        }


@transaction.atomic
def plan_materialize(
    *,
    plan: Plan,
    actor=None,
    progress: Callable[[int, str], None] | None = None,
    batch: uuid.UUID | None = None,
    only_unowned: bool = False,
) -> MaterializeResult:
    """Rebuild every unlocked primary assignment of `plan` from its locks, families, rules and
    geography, in SQL. Each account that moves from one owner to another (in the active plan: whose
    owner changes at all) gets a Change row; one summary Change describes the run. Bumps the plan
    version. `only_unowned` gives owners to accounts that have none and leaves every other
    assignment as it is (new accounts from a CRM; the planner's moves stay)."""
    started = time.perf_counter()
    report = progress or (lambda percent, message: None)
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    compiled = _compile_rules(plan)
    account_table = Account._meta.db_table
    assignment_table = AccountAssignment._meta.db_table
    # A caller that already recorded part of an edit (a unit move) passes its batch: one undo step.
    batch = batch or uuid.uuid4()

    with connection.cursor() as cursor:
        report(5, "Snapshotting current owners")
        cursor.execute(
            "DROP TABLE IF EXISTS tessera_mat_old, tessera_mat_own, tessera_mat_parts, tessera_mat_depth,"
            " tessera_mat_final"
        )
        cursor.execute(
            f"""CREATE TEMP TABLE tessera_mat_old ON COMMIT DROP AS
                SELECT account_id, territory_id FROM {assignment_table}
                WHERE plan_id = %s AND role = %s""",
            [plan.pk, AssignmentRole.PRIMARY],
        )
        # JIT compilation costs more than it saves on these short, index-driven statements.
        cursor.execute("SET LOCAL jit = off")
        # Each account's own answer (rules, then geography), before families are applied.
        cursor.execute(
            """CREATE TEMP TABLE tessera_mat_own (
                   account_id bigint PRIMARY KEY, territory_id bigint NOT NULL, source varchar(10) NOT NULL,
                   rule_id bigint, unit_id bigint) ON COMMIT DROP"""
        )
        unlocked = Account.objects.exclude(
            pk__in=AccountAssignment.objects.filter(
                plan=plan, role=AssignmentRole.PRIMARY, locked=True
            ).values("account_id")
        )
        for index, item in enumerate(compiled):
            report(10 + int(40 * index / max(len(compiled), 1)), f"Rule {item.rule.name}")
            matching = rule_filter(unlocked, item.rule, item.conditions).values("pk")
            sql, params = matching.query.sql_with_params()
            cursor.execute(
                f"""INSERT INTO tessera_mat_own (account_id, territory_id, source, rule_id)
                    SELECT m.id, %s, %s, %s FROM ({sql}) AS m(id)
                    ON CONFLICT (account_id) DO NOTHING""",
                [item.rule.territory_id, STEP_RULE, item.rule.pk, *params],
            )
        report(55, "Geography")
        # Point-in-polygon against whole county outlines is slow (hundreds of vertices each); the
        # same test against pieces of at most 64 vertices, with their own GiST index, is ~6x faster.
        cursor.execute(
            f"""CREATE TEMP TABLE tessera_mat_parts ON COMMIT DROP AS
                SELECT ua.territory_id, u.id AS unit_id, u.code,
                       array_position(%s::text[], u.level::text) AS fineness,
                       ST_Subdivide(u.geom, 64) AS geom
                FROM {UnitAssignment._meta.db_table} ua
                JOIN {GeoUnit._meta.db_table} u ON u.id = ua.unit_id
                WHERE ua.plan_id = %s""",
            [[str(level) for level in _LEVELS_COARSE_TO_FINE], plan.pk],
        )
        cursor.execute("CREATE INDEX ON tessera_mat_parts USING gist (geom)")
        cursor.execute("ANALYZE tessera_mat_parts")
        cursor.execute(
            f"""INSERT INTO tessera_mat_own (account_id, territory_id, source, unit_id)
                SELECT DISTINCT ON (a.id) a.id, p.territory_id, %s, p.unit_id
                FROM tessera_mat_parts p
                JOIN {account_table} a ON ST_Covers(p.geom, a.location)
                WHERE NOT EXISTS (SELECT 1 FROM tessera_mat_own o WHERE o.account_id = a.id)
                ORDER BY a.id, p.fineness DESC, p.code
                ON CONFLICT (account_id) DO NOTHING""",
            [STEP_GEOGRAPHY],
        )
        report(70, "Corporate families")
        # Final owners, filled root-first by family depth, so that a child takes its parent's final
        # answer and a locked child passes its own territory down. Accounts that never reach a root
        # (a parent cycle, or a chain deeper than MAX_FAMILY_DEPTH) keep their own answer.
        cursor.execute(
            f"""CREATE TEMP TABLE tessera_mat_depth ON COMMIT DROP AS
                WITH RECURSIVE family(account_id, depth) AS (
                    SELECT id, 0 FROM {account_table} WHERE parent_id IS NULL
                    UNION ALL
                    SELECT a.id, family.depth + 1 FROM {account_table} a
                    JOIN family ON a.parent_id = family.account_id
                    WHERE family.depth < %s
                ) SELECT account_id, depth FROM family""",
            [MAX_FAMILY_DEPTH],
        )
        cursor.execute("SELECT COALESCE(max(depth), 0) FROM tessera_mat_depth")
        max_depth = cursor.fetchone()[0]
        cursor.execute(
            f"""CREATE TEMP TABLE tessera_mat_final ON COMMIT DROP AS
                SELECT account_id, territory_id, source::varchar(10) AS source, rule_id, unit_id,
                       true AS locked
                FROM {assignment_table} WHERE plan_id = %s AND role = %s AND locked""",
            [plan.pk, AssignmentRole.PRIMARY],
        )
        cursor.execute("ALTER TABLE tessera_mat_final ADD PRIMARY KEY (account_id)")
        cursor.execute(
            """INSERT INTO tessera_mat_final
               SELECT o.account_id, o.territory_id, o.source, o.rule_id, o.unit_id, false
               FROM tessera_mat_own o JOIN tessera_mat_depth d ON d.account_id = o.account_id AND d.depth = 0
               ON CONFLICT (account_id) DO NOTHING"""
        )
        for depth in range(1, max_depth + 1):
            cursor.execute(
                f"""INSERT INTO tessera_mat_final
                    SELECT a.id,
                           COALESCE(p.territory_id, o.territory_id),
                           CASE WHEN p.territory_id IS NOT NULL THEN %s ELSE o.source END,
                           CASE WHEN p.territory_id IS NOT NULL THEN NULL ELSE o.rule_id END,
                           CASE WHEN p.territory_id IS NOT NULL THEN NULL ELSE o.unit_id END,
                           false
                    FROM tessera_mat_depth d
                    JOIN {account_table} a ON a.id = d.account_id
                    LEFT JOIN tessera_mat_final p ON p.account_id = a.parent_id
                    LEFT JOIN tessera_mat_own o ON o.account_id = a.id
                    WHERE d.depth = %s AND (p.territory_id IS NOT NULL OR o.territory_id IS NOT NULL)
                    ON CONFLICT (account_id) DO NOTHING""",
                [STEP_PARENT, depth],
            )
        cursor.execute(
            """INSERT INTO tessera_mat_final
               SELECT account_id, territory_id, source, rule_id, unit_id, false FROM tessera_mat_own
               ON CONFLICT (account_id) DO NOTHING"""
        )
        if only_unowned:
            # Everyone who has an owner keeps exactly that row: the writes below then touch only the
            # accounts without one.
            cursor.execute(
                """DELETE FROM tessera_mat_final f USING tessera_mat_old o
                   WHERE f.account_id = o.account_id AND o.territory_id IS NOT NULL"""
            )
            cursor.execute(
                f"""INSERT INTO tessera_mat_final
                    SELECT account_id, territory_id, source, rule_id, unit_id, locked
                    FROM {assignment_table} WHERE plan_id = %s AND role = %s
                    ON CONFLICT (account_id) DO NOTHING""",
                [plan.pk, AssignmentRole.PRIMARY],
            )
        plan.version += 1
        # An account gaining its first owner in a draft is not news; in the active plan it is
        # (the CRM's owner field changes), so there every difference is recorded.
        record_new = plan.status == PlanStatus.ACTIVE
        moved_sql = """FROM tessera_mat_final f FULL JOIN tessera_mat_old o USING (account_id)
                       WHERE f.territory_id IS DISTINCT FROM o.territory_id
                         AND (%s OR o.territory_id IS NOT NULL)"""
        cursor.execute(f"SELECT count(*) {moved_sql}", [record_new])
        moved = cursor.fetchone()[0]
        # The log before the owners, as every move does: the dashboards' credit cache then
        # re-credits from today on only (analytics migration 0006).
        if moved:
            report(85, "Recording changes")
            cursor.execute(
                f"""INSERT INTO {Change._meta.db_table}
                        (plan_id, actor_id, at, kind, batch, account_id, territory_from_id, territory_to_id,
                         plan_version, payload)
                    SELECT %s, %s, now(), %s, %s, account_id, o.territory_id, f.territory_id, %s,
                           jsonb_build_object('source', COALESCE(f.source, 'unassigned'))
                    {moved_sql}""",
                [
                    plan.pk,
                    getattr(actor, "pk", None),
                    ChangeKind.ACCOUNT_MOVED,
                    batch,
                    plan.version,
                    record_new,
                ],
            )
        report(92, "Writing assignments")
        # Touch only what differs: a rebuild after a small edit rewrites a handful of rows, not all.
        cursor.execute(
            f"""DELETE FROM {assignment_table} aa
                WHERE aa.plan_id = %s AND aa.role = %s AND NOT aa.locked
                  AND NOT EXISTS (SELECT 1 FROM tessera_mat_final f WHERE f.account_id = aa.account_id)""",
            [plan.pk, AssignmentRole.PRIMARY],
        )
        # A primary owner makes an overlay row for the same territory redundant (and would collide).
        cursor.execute(
            f"""DELETE FROM {assignment_table} aa USING tessera_mat_final f
                WHERE aa.plan_id = %s AND aa.role <> %s AND aa.account_id = f.account_id
                  AND aa.territory_id = f.territory_id""",
            [plan.pk, AssignmentRole.PRIMARY],
        )
        cursor.execute(
            f"""UPDATE {assignment_table} aa
                SET territory_id = f.territory_id, source = f.source, rule_id = f.rule_id,
                    unit_id = f.unit_id, updated = now()
                FROM tessera_mat_final f
                WHERE aa.plan_id = %s AND aa.role = %s AND NOT aa.locked AND f.account_id = aa.account_id
                  AND (aa.territory_id, aa.source, aa.rule_id, aa.unit_id)
                      IS DISTINCT FROM (f.territory_id, f.source, f.rule_id, f.unit_id)""",
            [plan.pk, AssignmentRole.PRIMARY],
        )
        cursor.execute(
            f"""INSERT INTO {assignment_table}
                    (plan_id, account_id, territory_id, role, source, locked, rule_id, unit_id,
                     created, updated)
                SELECT %s, f.account_id, f.territory_id, %s, f.source, false, f.rule_id, f.unit_id,
                       now(), now()
                FROM tessera_mat_final f
                WHERE NOT f.locked AND NOT EXISTS (
                    SELECT 1 FROM {assignment_table} aa
                    WHERE aa.plan_id = %s AND aa.role = %s AND aa.account_id = f.account_id)""",
            [plan.pk, AssignmentRole.PRIMARY, plan.pk, AssignmentRole.PRIMARY],
        )
        cursor.execute(
            """SELECT CASE WHEN locked THEN 'locked' ELSE source END, count(*)
               FROM tessera_mat_final GROUP BY 1"""
        )
        by_source = {row[0]: row[1] for row in cursor.fetchall()}
        cursor.execute(f"SELECT count(*) FROM {account_table}")
        total_accounts = cursor.fetchone()[0]

    # A rebuild rewrites the plan's assignments (and may log as many changes).
    analyze_after_large_write(AccountAssignment, rows=total_accounts)
    analyze_after_large_write(Change, rows=moved)
    assigned = sum(by_source.values())
    result = MaterializeResult(
        plan_id=plan.pk,
        accounts=total_accounts,
        by_source=by_source,
        unassigned=total_accounts - assigned,
        moved=moved,
        seconds=time.perf_counter() - started,
        batch=str(batch),
    )
    Plan.objects.filter(pk=plan.pk).update(version=plan.version)
    Change.objects.create(
        plan=plan,
        actor=actor,
        kind=ChangeKind.PLAN_MATERIALIZED,
        batch=batch,
        plan_version=plan.version,
        payload={k: v for k, v in result.as_dict().items() if k != "seconds"},
    )
    if moved and record_new:
        event_emit(ASSIGNMENT_CHANGED, {"plan_id": plan.pk, "batch": str(batch), "accounts": moved})
    report(100, "Done")
    return result

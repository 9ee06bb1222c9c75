"""Warning signs: detecting them in the active plan, keeping one open warning per problem, the
runs of the check, and the balance snapshot a published plan's drift is measured against."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import Account, Rep
from territories.choices import AssignmentRole, JobStatus
from territories.models import AccountAssignment, Plan, TerritoryMembership
from territories.selectors import plan_active_on
from tessera_common.errors import ApplicationError

from . import metrics, selectors
from .choices import CheckTrigger, Severity, SnapshotSource, WarningKind
from .models import PlanBalanceSnapshot, WarningCheck, WarningSign

logger = logging.getLogger(__name__)

Progress = Callable[[int, str], None]


# --------------------------------------------------------------------------------------- snapshots


@transaction.atomic
def plan_balance_snapshot_take(*, plan: Plan, source: str = SnapshotSource.PUBLISH) -> PlanBalanceSnapshot:
    """Record each leaf territory's accounts, revenue, potential and workload in `plan` now."""
    hierarchy = selectors._hierarchy(plan)
    leaves = [i for i, n in hierarchy.nodes.items() if n.is_leaf]
    balance = selectors.territory_balance(plan=plan, territory_ids=leaves)
    territories = {
        str(i): {
            "code": hierarchy.nodes[i].code,
            **balance.get(i, dict.fromkeys(selectors.BALANCE_METRICS, 0.0)),
        }
        for i in leaves
    }
    totals = {m: sum(t[m] for t in territories.values()) for m in selectors.BALANCE_METRICS}
    return PlanBalanceSnapshot.objects.create(
        plan=plan,
        taken_at=timezone.now(),
        source=source,
        figures={"territories": territories, "totals": totals},
    )


def plan_balance_snapshot_at_publish(*, plan: Plan) -> PlanBalanceSnapshot | None:
    """The snapshot drift is measured from: the first one taken at or after the plan's publish."""
    snapshots = PlanBalanceSnapshot.objects.filter(plan=plan)
    if plan.published_at is not None:
        snapshots = snapshots.filter(taken_at__gte=plan.published_at)
    return snapshots.order_by("taken_at").first()


# --------------------------------------------------------------------------------------- detection


@dataclass
class Finding:
    """One warning sign found by a check, before it is stored."""

    kind: str
    severity: str
    title: str
    detail: str
    territory_id: int | None = None
    rep_id: int | None = None
    figures: dict = field(default_factory=dict)
    rebalance: int | None = None  # display territory whose subtree a rebalance would fix it in
    suggestion: str = ""
    action_url: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.territory_id or '-'}:{self.rep_id or '-'}"


class _Everyone:
    """The checks look at the whole plan, as a planner would."""

    pk = None
    is_authenticated = True
    is_active = True
    sees_everything = True
    can_plan = True


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _detect_unassigned(plan: Plan) -> list[Finding]:
    primary = AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY, account=OuterRef("pk"))
    unassigned = Account.objects.exclude(Exists(primary))
    count = unassigned.count()
    if count < settings.TESSERA_WARN_UNASSIGNED_MIN:
        return []
    total = Account.objects.count()
    share = count / total if total else 0.0
    states = list(
        unassigned.exclude(state="").values_list("state", flat=True).order_by("state").distinct()[:6]
    )
    return [
        Finding(
            kind=WarningKind.UNASSIGNED_ACCOUNTS,
            severity=Severity.CRITICAL if share > 0.05 else Severity.WARNING,
            title=f"{count:,} accounts have no territory in {plan.name}",
            detail=(
                f"{_pct(share)} of all accounts are owned by no territory"
                + (f" (states: {', '.join(states)})" if states else "")
                + "; their bookings are credited to no one."
            ),
            figures={"accounts": count, "share": share, "states": states},
            suggestion=(
                "Rebuild the plan's assignments from its rules and geography, or add a rule for them, "
                "in the planner."
            ),
            action_url=f"/planner/{plan.pk}/",
        )
    ]


def _detect_without_rep(plan: Plan, hierarchy: selectors.Hierarchy) -> list[Finding]:
    staffed = set(
        TerritoryMembership.objects.filter(territory__plan=plan).values_list("territory_id", flat=True)
    )
    leaves = [n for n in hierarchy.nodes.values() if n.is_leaf and n.id not in staffed]
    if not leaves:
        return []
    accounts = selectors.territory_balance(plan=plan, territory_ids=[n.id for n in leaves])
    findings = []
    for node in leaves:
        owned = int(accounts.get(node.id, {}).get("accounts", 0))
        findings.append(
            Finding(
                kind=WarningKind.TERRITORY_WITHOUT_REP,
                severity=Severity.CRITICAL if owned else Severity.WARNING,
                title=f"{node.code} {node.name} has no rep",
                detail=(
                    f"It owns {owned:,} accounts that nobody covers." if owned else "It owns no accounts yet."
                ),
                territory_id=node.id,
                figures={"accounts": owned},
                suggestion=f"Assign a rep to {node.code} in the planner, or merge it into a neighbour.",
                action_url=f"/planner/{plan.pk}/",
            )
        )
    return findings


def _detect_over_capacity(plan: Plan, hierarchy: selectors.Hierarchy) -> list[Finding]:
    hours_per_fte = float(settings.TESSERA_HOURS_PER_FTE)
    margin = float(settings.TESSERA_WARN_CAPACITY_MARGIN)
    workloads = selectors.rep_workloads(plan=plan, territory_ids=None)
    # Hours and capacity of each parent's leaves together: when the whole group is over capacity,
    # moving accounts between its territories cannot help, and the suggestion says so.
    group: dict[int | None, list[float]] = {}
    for item in workloads.values():
        parent = hierarchy.nodes[item["territory_ids"][0]].parent_id
        totals = group.setdefault(parent, [0.0, 0.0, 0])
        totals[0] += item["hours"]
        totals[1] += item["capacity_fte"] * hours_per_fte
        totals[2] += 1
    findings = []
    for rep_id, item in workloads.items():
        capacity = item["capacity_fte"] * hours_per_fte
        if capacity <= 0 or item["hours"] <= capacity * (1 + margin):
            continue
        utilisation = item["hours"] / capacity
        leaf = item["territory_ids"][0]
        parent = hierarchy.nodes[leaf].parent_id
        codes = ", ".join(hierarchy.nodes[t].code for t in item["territory_ids"])
        finding = Finding(
            kind=WarningKind.OVER_CAPACITY,
            severity=Severity.CRITICAL if utilisation > 1.5 else Severity.WARNING,
            title=f"{item['name']} is at {_pct(utilisation)} of capacity",
            detail=(
                f"{item['hours']:,.0f} workload hours a year in {codes} against "
                f"{capacity:,.0f} ({item['capacity_fte']:g} FTE × {hours_per_fte:,.0f} h)."
            ),
            territory_id=leaf,
            rep_id=rep_id,
            figures={
                "hours": round(item["hours"], 1),
                "capacity_hours": capacity,
                "utilisation": utilisation,
            },
            rebalance=parent,
        )
        hours, group_capacity, reps = group[parent]
        if group_capacity and hours > group_capacity * (1 + margin):
            name = hierarchy.nodes[parent].name if parent else plan.name
            finding.rebalance = None
            finding.suggestion = (
                f"Add capacity to {name}: its {reps} reps carry {hours:,.0f} hours against "
                f"{group_capacity:,.0f} ({_pct(hours / group_capacity)}), so rebalancing inside it cannot "
                "bring everyone under capacity."
            )
            finding.action_url = f"/planner/{plan.pk}/"
            finding.figures["group_utilisation"] = hours / group_capacity
        findings.append(finding)
    return findings


def _detect_drift(plan: Plan, hierarchy: selectors.Hierarchy, notes: list[str]) -> list[Finding]:
    snapshot = plan_balance_snapshot_at_publish(plan=plan)
    if snapshot is None:
        snapshot = plan_balance_snapshot_take(plan=plan, source=SnapshotSource.BASELINE)
        notes.append(
            f"No balance snapshot from publishing {plan.name}: took one now; drift is measured from it."
        )
        return []
    tolerance = float(settings.TESSERA_WARN_DRIFT_TOLERANCE)
    then = snapshot.figures.get("territories", {})
    then_totals = snapshot.figures.get("totals", {})
    leaves = [i for i, n in hierarchy.nodes.items() if n.is_leaf]
    now = selectors.territory_balance(plan=plan, territory_ids=leaves)
    now_totals = {m: sum(v[m] for v in now.values()) for m in selectors.BALANCE_METRICS}
    since = (
        "publish" if snapshot.source == SnapshotSource.PUBLISH else f"{snapshot.taken_at:%Y-%m-%d} (baseline)"
    )
    findings = []
    for leaf in leaves:
        before = then.get(str(leaf))
        if before is None:
            continue
        drifts = {}
        for m in selectors.BALANCE_METRICS:
            share_then = metrics.ratio(before.get(m, 0.0), then_totals.get(m))
            share_now = metrics.ratio(now.get(leaf, {}).get(m, 0.0), now_totals.get(m))
            if share_then and share_now is not None:
                change = share_now / share_then - 1
                if abs(change) > tolerance:
                    drifts[m] = change
        if not drifts:
            continue
        node = hierarchy.nodes[leaf]
        worst = max(drifts, key=lambda m: abs(drifts[m]))
        findings.append(
            Finding(
                kind=WarningKind.BALANCE_DRIFT,
                severity=Severity.CRITICAL if abs(drifts[worst]) > 2 * tolerance else Severity.WARNING,
                title=f"{node.code} {node.name} drifted {drifts[worst]:+.0%} in {worst} since {since}",
                detail="Share of the plan's total now against then: "
                + ", ".join(f"{m} {v:+.0%}" for m, v in sorted(drifts.items()))
                + f" (tolerance ±{_pct(tolerance)}).",
                territory_id=leaf,
                figures={"drift": drifts, "tolerance": tolerance, "snapshot": snapshot.pk},
                rebalance=node.parent_id,
            )
        )
    return findings


def _detect_attainment_gap(plan: Plan, today: dt.date, notes: list[str]) -> list[Finding]:
    window = selectors.period_window(period="ytd", as_of=today)
    scope = selectors.scope_build(user=_Everyone(), window=window)
    if scope is None or scope.display.plan.pk != plan.pk:
        return []
    if scope.quota_plan is None:
        notes.append(f"No quota plan for {window.label}: the attainment gap was not checked.")
        return []
    report = selectors.Report(scope)
    threshold = float(settings.TESSERA_WARN_ATTAINMENT_GAP)
    findings = []
    for node in scope.display.nodes.values():
        leaves = [c for c in node.children if scope.display.nodes[c].is_leaf]
        if len(leaves) < 2:
            continue
        pacing = {}
        for leaf in leaves:
            row = report.territory_row(leaf)
            if row["pacing"] is not None:
                pacing[row["code"]] = row["pacing"]
        gap = metrics.largest_gap(pacing)
        if gap is None or gap[2] <= threshold:
            continue
        best, worst, size = gap
        findings.append(
            Finding(
                kind=WarningKind.ATTAINMENT_GAP,
                severity=Severity.CRITICAL if size > 2 * threshold else Severity.WARNING,
                title=f"{node.name}: {size * 100:.0f} points between {best} and {worst} on pace",
                detail=(
                    f"{window.label}: {best} is at {_pct(pacing[best])} of its expected bookings to date, "
                    f"{worst} at {_pct(pacing[worst])} (threshold {threshold * 100:.0f} points)."
                ),
                territory_id=node.id,
                figures={"pacing": pacing, "gap": size, "threshold": threshold},
                rebalance=node.id,
            )
        )
    return findings


def _preview(plan: Plan, hierarchy: selectors.Hierarchy, node_id: int | None) -> str:
    """Run the optimizer in rebalance mode on the subtree (or the whole plan) and say how much would
    move. The number is the optimizer's own answer; when it cannot answer, the text says why."""
    from territories.balancing import balance_parameters_clean, balance_problem_build
    from territories.optimizer import InfeasibleProblem, solve

    name = hierarchy.nodes[node_id].name if node_id else plan.name
    try:
        parameters = balance_parameters_clean(
            {
                "mode": "rebalance",
                "subtree": hierarchy.nodes[node_id].code if node_id else None,
                "time_limit": float(settings.TESSERA_WARN_PREVIEW_SECONDS),
            }
        )
        built = balance_problem_build(plan=plan, parameters=parameters)
        started = time.monotonic()
        solution = solve(built.problem)
        elapsed = time.monotonic() - started
    except (ApplicationError, InfeasibleProblem) as exc:
        message = getattr(exc, "message", None) or str(exc)
        return f"rebalance {name} in the planner (no preview: {message.rstrip('.')})."
    n = built.problem.n
    share = solution.moved_count / n if n else 0.0
    timed_out = elapsed >= float(settings.TESSERA_WARN_PREVIEW_SECONDS) * 0.98
    # One decimal below 10%, so a small move does not read as "0%".
    percent = f"{share * 100:.1f}%" if share < 0.1 else f"{share * 100:.0f}%"
    text = f"rebalance {name}: a preview moves {percent} of accounts ({solution.moved_count:,} of {n:,})"
    if not solution.within_tolerance:
        text += ", still outside the ±5% tolerance"
    if timed_out:
        text += f" (preview stopped at its {parameters['time_limit']:g} s limit)"
    return text + "."


def warnings_detect(
    *, plan: Plan, today: dt.date | None = None, preview: bool = True, progress: Progress | None = None
) -> tuple[list[Finding], list[str]]:
    """Every warning sign in `plan` (normally the active plan) with its suggested action. Previews of
    rebalancing run once per subtree however many warnings point at it."""
    today = today or timezone.localdate()
    notes: list[str] = []
    report = progress or (lambda percent, message: None)
    hierarchy = selectors._hierarchy(plan)
    report(5, "Territories without a rep")
    findings = _detect_without_rep(plan, hierarchy)
    report(10, "Unassigned accounts")
    findings += _detect_unassigned(plan)
    report(20, "Rep workload against capacity")
    findings += _detect_over_capacity(plan, hierarchy)
    report(30, "Balance drift since publish")
    findings += _detect_drift(plan, hierarchy, notes)
    report(40, "Attainment gaps")
    findings += _detect_attainment_gap(plan, today, notes)
    # A finding that already has its suggestion (capacity short in the whole group) needs no preview.
    wanting = [f for f in findings if f.kind in _REBALANCING and not f.suggestion]
    subtrees = sorted({f.rebalance for f in wanting}, key=str)
    previews: dict[int | None, str] = {}
    for i, node_id in enumerate(subtrees):
        label = hierarchy.nodes[node_id].name if node_id else plan.name
        report(45 + int(50 * i / max(1, len(subtrees))), f"Previewing a rebalance of {label}")
        previews[node_id] = _preview(plan, hierarchy, node_id) if preview else f"rebalance {label}."
    for finding in wanting:
        if finding.kind in _REBALANCING:
            text = previews[finding.rebalance]
            finding.suggestion = text[0].upper() + text[1:]
            finding.action_url = (
                f"/planner/{plan.pk}/?balance={finding.rebalance}"
                if finding.rebalance
                else f"/planner/{plan.pk}/"
            )
    return findings, notes


_REBALANCING = {WarningKind.OVER_CAPACITY, WarningKind.BALANCE_DRIFT, WarningKind.ATTAINMENT_GAP}


@transaction.atomic
def warnings_record(*, plan: Plan, findings: list[Finding], check: WarningCheck | None = None) -> dict:
    """Store findings: update the open warning with the same key, open new ones, and resolve open
    warnings (of this plan, or of plans no longer in effect) that were not found again."""
    now = timezone.now()
    found_keys = set()
    opened = updated = 0
    for f in findings:
        key = f"{plan.pk}:{f.key}"
        found_keys.add(key)
        values = {
            "kind": f.kind,
            "severity": f.severity,
            "plan": plan,
            "territory_id": f.territory_id,
            "rep_id": f.rep_id,
            "title": f.title[:255],
            "detail": f.detail,
            "suggestion": f.suggestion,
            "action_url": f.action_url[:255],
            "figures": f.figures,
            "last_seen": now,
            "last_check": check,
        }
        existing = WarningSign.objects.select_for_update().filter(key=key, resolved_at__isnull=True).first()
        if existing is None:
            WarningSign.objects.create(key=key, first_seen=now, **values)
            opened += 1
        else:
            for name, value in values.items():
                setattr(existing, name, value)
            existing.save()
            updated += 1
    stale = WarningSign.objects.filter(resolved_at__isnull=True).exclude(key__in=found_keys)
    resolved = stale.filter(plan=plan).update(resolved_at=now, updated=now)
    resolved += stale.exclude(plan=plan).update(resolved_at=now, updated=now)
    return {"opened": opened, "still_open": updated, "resolved": resolved}


# ------------------------------------------------------------------------------------------ runs


def warning_check_create(
    *, actor=None, trigger: str = CheckTrigger.MANUAL, enqueue: bool = True
) -> WarningCheck:
    """A queued check; the Celery task is sent when the transaction commits. Only planners and
    admins start one by hand (it runs the optimizer, which is not free)."""
    if actor is not None and not actor.can_plan:
        raise ApplicationError("Only planners and admins can run the warning checks.", status=403)
    running = WarningCheck.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).first()
    if running is not None and trigger == CheckTrigger.MANUAL:
        return running  # one at a time: "check now" twice follows the same run
    check = WarningCheck.objects.create(trigger=trigger, created_by=actor, message="Queued")
    if enqueue:
        from .tasks import check_warnings_run

        def send() -> None:
            result = check_warnings_run.delay(check.pk)
            WarningCheck.objects.filter(pk=check.pk).update(celery_task_id=result.id or "")

        transaction.on_commit(send)
    return check


def _set(check: WarningCheck, **fields) -> None:
    for name, value in fields.items():
        setattr(check, name, value)
    WarningCheck.objects.filter(pk=check.pk).update(**fields, updated=timezone.now())


def warning_check_run(
    *, check: WarningCheck, today: dt.date | None = None, preview: bool = True
) -> WarningCheck:
    """Run a queued check on the plan in effect today. Not one transaction: progress must be seen by
    the page polling it; storing the findings is atomic. Failures end the run as failed with the
    message, and unexpected ones are raised again for the worker's log."""
    claimed = WarningCheck.objects.filter(pk=check.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), message="Starting", updated=timezone.now()
    )
    check.refresh_from_db()
    if not claimed:
        return check
    today = today or timezone.localdate()
    last = [-1]

    def progress(percent: int, message: str) -> None:
        if percent != last[0]:
            last[0] = percent
            _set(check, progress=max(0, min(99, percent)), message=message[:255])

    try:
        plan = plan_active_on(date=today)
        if plan is None:
            resolved = WarningSign.objects.filter(resolved_at__isnull=True).update(
                resolved_at=timezone.now(), updated=timezone.now()
            )
            result = {
                "plan": None,
                "found": 0,
                "resolved": resolved,
                "notes": ["No plan is in effect today."],
            }
        else:
            findings, notes = warnings_detect(plan=plan, today=today, preview=preview, progress=progress)
            progress(97, "Recording")
            stored = warnings_record(plan=plan, findings=findings, check=check)
            by_kind: dict[str, int] = {}
            for f in findings:
                by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
            result = {"plan": plan.pk, "found": len(findings), "by_kind": by_kind, "notes": notes, **stored}
    except ApplicationError as exc:
        _set(check, status=JobStatus.FAILED, error=exc.message, message="Failed", finished_at=timezone.now())
        return check
    except BaseException as exc:
        _set(
            check,
            status=JobStatus.FAILED,
            error=f"Unexpected error: {type(exc).__name__}: {exc}"[:2000],
            message="Failed",
            finished_at=timezone.now(),
        )
        raise
    _set(
        check,
        status=JobStatus.SUCCEEDED,
        progress=100,
        message=f"Found {result['found']} warning signs",
        result=result,
        finished_at=timezone.now(),
    )
    return check


def rep_for_user(user) -> Rep | None:
    return Rep.objects.filter(user=user).first() if getattr(user, "is_authenticated", False) else None


# ----------------------------------------------------------------------------------------- read caches


def read_caches_warm(*, today: dt.date | None = None) -> dict:
    """Bring the expensive reads of today's dashboards up to date after writes: the year's credited
    bookings through today (every period of the current fiscal year reads them) and the active
    plan's territory balance. A fresh cache costs one small query; a stale one is computed here, in
    the worker, rather than in the first manager's request. Returns {key: seconds it took}."""
    today = today or timezone.localdate()
    window = selectors.period_window(period="ytd", as_of=today)
    took: dict[str, float] = {}
    started = time.perf_counter()
    selectors.credit_cells(year_start=window.year_start, through=window.through)
    took[f"credits:{window.year_start.isoformat()}:{window.through.isoformat()}"] = round(
        time.perf_counter() - started, 3
    )
    plan = plan_active_on(date=today)
    if plan is not None:
        started = time.perf_counter()
        selectors.territory_balance(plan=plan, territory_ids=None)
        took[f"balance:{plan.pk}"] = round(time.perf_counter() - started, 3)
    return took

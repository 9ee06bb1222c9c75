"""Balance jobs: run the optimizer on a plan and store the result as a new scenario.

A job is created (parameters validated, enqueued on commit), then run by the Celery task
`territories.balance_plan` or synchronously by `manage.py balance`. Running builds an optimizer
Problem from the plan (accounts, or geography units with their accounts' totals), solves it with
progress and cancel, and writes the answer into a clone of the plan: the input plan is never changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Account
from tessera_common.errors import ApplicationError
from tessera_common.events import JOB_FINISHED, event_emit

from .choices import (
    UNIT_LEVEL_PRECEDENCE,
    AssignmentRole,
    AssignmentSource,
    ChangeKind,
    JobStatus,
    MemberRole,
    PlanStatus,
)
from .models import (
    AccountAssignment,
    BalanceJob,
    Change,
    GeoUnit,
    Plan,
    Territory,
    TerritoryMembership,
    UnitAssignment,
)
from .resolver import plan_materialize
from .selectors import plan_list, territory_subtree_ids
from .services import plan_clone

logger = logging.getLogger(__name__)

MODES = ("design", "rebalance", "sweep")
LEVELS = ("accounts", "units")
METRICS = ("revenue", "potential", "workload_hours", "count")
DEFAULT_METRICS = ["revenue", "workload_hours", "count"]
DEFAULT_SWEEP = [0.0, 0.5, 1.0, 2.0, 5.0]
MAX_TIME_LIMIT = 3600.0
# job.result keeps reasons for this many moved entities; the Change rows keep all of them.
MAX_REASONS = 200
# Reading cancel_requested more often than this would cost a query per solver callback.
CANCEL_POLL_SECONDS = 0.5
# Progress budget: building the problem, solving, writing the scenario.
SOLVE_FROM, SOLVE_TO = 5, 90


def _bool(value, name: str, errors: dict) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    errors[name] = ["must be true or false"]
    return False


def _float(value, name: str, errors: dict, *, minimum: float, maximum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[name] = ["must be a number"]
        return minimum
    if not math.isfinite(number) or number < minimum or (maximum is not None and number > maximum):
        errors[name] = [f"must be between {minimum} and {maximum}" if maximum else f"must be ≥ {minimum}"]
    return number


def _float_list(value, name: str, errors: dict) -> list[float]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not value:
        errors[name] = ["must be a non-empty list of numbers"]
        return []
    numbers = [_float(v, name, errors, minimum=0.0) for v in value]
    return numbers


def balance_parameters_clean(parameters: dict) -> dict:
    """Check and complete balance parameters; raise ApplicationError naming every bad field.

    The cleaned dict is what the job stores, so a job can always be re-run from its row."""
    raw = dict(parameters or {})
    errors: dict[str, list[str]] = {}
    unknown = sorted(
        set(raw)
        - {
            "mode",
            "level",
            "metrics",
            "tolerance",
            "territories",
            "per_rep",
            "keep_locks",
            "disruption_weight",
            "weights",
            "sweep_weights",
            "subtree",
            "name",
            "time_limit",
            "seed",
        }
    )
    for key in unknown:
        errors[key] = ["unknown parameter"]
    mode = raw.get("mode") or "rebalance"
    if mode not in MODES:
        errors["mode"] = [f"use one of {', '.join(MODES)}"]
    level = raw.get("level") or "accounts"
    if level not in LEVELS:
        errors["level"] = [f"use one of {', '.join(LEVELS)}"]
    metrics = raw.get("metrics") or DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, list) or not metrics or any(m not in METRICS for m in metrics):
        errors["metrics"] = [f"a non-empty list of {', '.join(METRICS)}"]
        metrics = DEFAULT_METRICS
    elif len(set(metrics)) != len(metrics):
        errors["metrics"] = ["each metric once"]
    tolerance_raw = raw.get("tolerance", 0.05)
    if isinstance(tolerance_raw, list | tuple):
        tolerance: float | list[float] = [
            _float(t, "tolerance", errors, minimum=0.0, maximum=1.0) for t in tolerance_raw
        ]
        if len(tolerance) != len(metrics):
            errors["tolerance"] = [f"one value, or one per metric ({len(metrics)})"]
    else:
        tolerance = _float(tolerance_raw, "tolerance", errors, minimum=0.0, maximum=1.0)
    per_rep = _bool(raw.get("per_rep", False), "per_rep", errors)
    territories = raw.get("territories")
    if territories is not None:
        try:
            territories = int(territories)
            if territories < 1:
                raise ValueError
        except (TypeError, ValueError):
            errors["territories"] = ["must be a whole number ≥ 1"]
        if per_rep:
            errors["territories"] = ["give either a number of territories or per_rep, not both"]
    keep_locks = _bool(raw.get("keep_locks", True), "keep_locks", errors)
    default_disruption = 0.0 if mode == "design" else 1.0
    disruption_weight = _float(
        raw.get("disruption_weight", default_disruption), "disruption_weight", errors, minimum=0.0
    )
    weights = raw.get("weights")
    if isinstance(weights, dict):
        if set(weights) - set(metrics):
            errors["weights"] = ["weights may only name the chosen metrics"]
        weights = [_float(weights.get(m, 1.0), "weights", errors, minimum=0.0) for m in metrics]
    elif weights is not None:
        weights = _float_list(weights, "weights", errors)
        if weights and len(weights) != len(metrics):
            errors["weights"] = [f"one weight per metric ({len(metrics)})"]
    sweep_weights = raw.get("sweep_weights")
    sweep_weights = (
        DEFAULT_SWEEP if sweep_weights is None else _float_list(sweep_weights, "sweep_weights", errors)
    )
    subtree = raw.get("subtree") or None
    name = (raw.get("name") or "").strip() or None
    if name and len(name) > 200:
        errors["name"] = ["at most 200 characters"]
    time_limit = _float(raw.get("time_limit", 30), "time_limit", errors, minimum=1.0, maximum=MAX_TIME_LIMIT)
    try:
        seed = int(raw.get("seed", 0))
    except (TypeError, ValueError):
        errors["seed"] = ["must be a whole number"]
        seed = 0
    if errors:
        raise ApplicationError("The balance parameters are invalid: " + "; ".join(sorted(errors)), errors)
    return {
        "mode": mode,
        "level": level,
        "metrics": list(metrics),
        "tolerance": tolerance,
        "territories": territories,
        "per_rep": per_rep,
        "keep_locks": keep_locks,
        "disruption_weight": disruption_weight,
        "weights": weights,
        "sweep_weights": sorted(set(sweep_weights)) if mode == "sweep" else None,
        "subtree": subtree,
        "name": name,
        "time_limit": time_limit,
        "seed": seed,
    }


def balance_job_list(*, user) -> QuerySet[BalanceJob]:
    """Jobs the user may see: planners and admins see all jobs on plans they see; others their own."""
    jobs = BalanceJob.objects.select_related("plan", "created_by", "produced_plan")
    if not user.is_authenticated or not user.is_active:
        return jobs.none()
    if user.can_plan:
        return jobs.filter(plan__in=plan_list(user=user))
    return jobs.filter(created_by=user)


@transaction.atomic
def balance_job_create(*, plan: Plan, parameters: dict, actor=None, enqueue: bool = True) -> BalanceJob:
    """Validate parameters against the plan and create a queued job; the Celery task is sent when
    the transaction commits (so the worker finds the row). `enqueue=False` is for running it here."""
    if actor is not None and not actor.can_plan:
        raise ApplicationError("Only planners and admins can balance a plan.", status=403)
    cleaned = balance_parameters_clean(parameters)
    if plan.status == PlanStatus.ARCHIVED:
        # Still allowed: the result is a new draft, and archived plans are a fair starting point.
        logger.info("Balancing archived plan %s", plan.pk)
    _leaves(plan, cleaned["subtree"])  # refuses an unknown subtree or a plan without leaves now
    job = BalanceJob.objects.create(plan=plan, created_by=actor, parameters=cleaned, message="Queued")
    if enqueue:
        from .tasks import balance_plan

        def send() -> None:
            result = balance_plan.delay(job.pk)
            BalanceJob.objects.filter(pk=job.pk).update(celery_task_id=result.id or "")

        transaction.on_commit(send)
    return job


@transaction.atomic
def balance_job_cancel(*, job: BalanceJob, actor=None) -> BalanceJob:
    """Cancel a queued job at once, or ask a running one to stop (the solver checks between steps)."""
    job = BalanceJob.objects.select_for_update().get(pk=job.pk)
    if actor is not None and not (actor.can_plan or job.created_by_id == actor.pk):
        raise ApplicationError("Only the job's creator or a planner can cancel it.", status=403)
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.message = "Cancelled before it started"
        job.finished_at = timezone.now()
        job.cancel_requested = True
        job.save(update_fields=["status", "message", "finished_at", "cancel_requested", "updated"])
        event_emit(
            JOB_FINISHED,
            {
                "job_id": job.pk,
                "kind": "balance",
                "plan_id": job.plan_id,
                "status": job.status,
                "produced_plan_id": None,
                "error": None,
            },
        )
    elif job.status == JobStatus.RUNNING:
        job.cancel_requested = True
        job.message = "Cancelling…"
        job.save(update_fields=["cancel_requested", "message", "updated"])
    else:
        raise ApplicationError(
            f"The job has already {job.get_status_display().lower()}; there is nothing to cancel.",
            {"status": [job.status]},
            status=409,
        )
    return job


# --- building the problem -------------------------------------------------------------------------


@dataclass
class _Built:
    """A Problem plus what is needed to map its indices back to rows."""

    problem: object
    entity_ids: list[int]
    entity_labels: list[str]
    current_ids: list[int | None]
    leaves: list[Territory]
    current_index: np.ndarray
    extra_leaves: int = 0
    frozen: dict = field(default_factory=dict)


def _leaves(plan: Plan, subtree: str | None) -> list[Territory]:
    territories = Territory.objects.filter(plan=plan)
    if subtree:
        root = territories.filter(code=subtree).first()
        if root is None:
            raise ApplicationError(
                f"Plan '{plan.name}' has no territory with code {subtree!r}.", {"subtree": ["unknown code"]}
            )
        territories = territories.filter(pk__in=territory_subtree_ids(territory=root))
    leaves = list(territories.filter(children__isnull=True).order_by("code"))
    if not leaves:
        raise ApplicationError(f"Plan '{plan.name}' has no leaf territories to balance.")
    return leaves


def _anchors(leaves: list[Territory]) -> tuple[np.ndarray, np.ndarray]:
    memberships = {
        m.territory_id: m.rep
        for m in TerritoryMembership.objects.filter(territory__in=leaves, role=MemberRole.PRIMARY)
        .select_related("rep")
        .order_by("territory_id", "share", "-rep_id")  # the last, largest share, wins the dict
    }
    missing = [t.code for t in leaves if t.pk not in memberships or memberships[t.pk].home_location is None]
    if missing:
        raise ApplicationError(
            f"Balancing per rep needs a primary rep with a home location in every territory; "
            f"missing in {', '.join(missing[:10])}{'…' if len(missing) > 10 else ''}.",
            {"per_rep": [f"no primary rep home in {len(missing)} territories"]},
        )
    anchors = np.array(
        [[memberships[t.pk].home_location.x, memberships[t.pk].home_location.y] for t in leaves]
    )
    capacity = np.array([float(memberships[t.pk].capacity_fte) for t in leaves])
    return anchors, capacity


def _metric_matrix(rows: list[dict], metrics: list[str]) -> np.ndarray:
    return np.array([[float(row[m] or 0) for m in metrics] for row in rows], dtype=float).reshape(
        len(rows), len(metrics)
    )


def _account_entities(plan: Plan, leaves: list[Territory], subtree: bool, keep_locks: bool) -> tuple:
    leaf_ids = [t.pk for t in leaves]
    primary = AccountAssignment.objects.filter(plan=plan, role=AssignmentRole.PRIMARY)
    in_scope = Q(assignments__in=primary.filter(territory_id__in=leaf_ids))
    if not subtree:
        # Accounts without an owner in this plan are balanced too: designing should place everyone.
        in_scope |= ~Q(pk__in=primary.values("account_id"))
    accounts = Account.objects.filter(in_scope)
    located = accounts.filter(location__isnull=False).distinct()
    no_location = accounts.filter(location__isnull=True).distinct().count()
    owner = {
        a.account_id: (a.territory_id, a.locked)
        for a in primary.filter(territory_id__in=leaf_ids).only("account_id", "territory_id", "locked")
    }
    rows = list(
        located.order_by("pk").values("pk", "name", "location", "revenue", "potential", "workload_hours")
    )
    for row in rows:
        row["count"] = 1
        row["current"], row["locked"] = owner.get(row["pk"], (None, False))
        row["locked"] = row["locked"] and keep_locks
        row["point"] = (row["location"].x, row["location"].y)
    return rows, {"accounts_without_location": no_location}


def _unit_entities(plan: Plan, leaves: list[Territory], keep_locks: bool) -> tuple:
    leaf_ids = [t.pk for t in leaves]
    assignments = list(
        UnitAssignment.objects.filter(plan=plan, territory_id__in=leaf_ids)
        .select_related("unit")
        .defer("unit__geom", "unit__geom_simplified")
        .order_by("unit_id")
    )
    if not assignments:
        raise ApplicationError(
            f"Plan '{plan.name}' has no geography units assigned to the territories being balanced; "
            f"balance on accounts instead.",
            {"level": ["no unit assignments"]},
        )
    precedence = " ".join(f"WHEN '{level}' THEN {rank}" for level, rank in UNIT_LEVEL_PRECEDENCE.items())
    unit_ids = [a.unit_id for a in assignments]
    totals: dict[int, dict] = {}
    # Each account counts once, in the finest assigned unit covering it (the resolver's geography step).
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH owner AS (
                    SELECT DISTINCT ON (a.id) a.id AS account_id, u.id AS unit_id,
                           a.revenue, a.potential, a.workload_hours
                    FROM {Account._meta.db_table} a
                    JOIN {GeoUnit._meta.db_table} u ON u.id = ANY(%s) AND ST_Covers(u.geom, a.location)
                    WHERE a.location IS NOT NULL
                    ORDER BY a.id, CASE u.level {precedence} ELSE 0 END DESC, u.id
                )
                SELECT unit_id, SUM(revenue), SUM(potential), SUM(workload_hours), COUNT(*)
                FROM owner GROUP BY unit_id""",
            [unit_ids],
        )
        for unit_id, revenue, potential, hours, count in cursor.fetchall():
            totals[unit_id] = {
                "revenue": revenue,
                "potential": potential,
                "workload_hours": hours,
                "count": count,
            }
    empty = {"revenue": 0, "potential": 0, "workload_hours": 0, "count": 0}
    rows = []
    for a in assignments:
        rows.append(
            {
                "pk": a.unit_id,
                "name": f"{a.unit.code} {a.unit.name}",
                "point": (a.unit.centroid.x, a.unit.centroid.y),
                "current": a.territory_id,
                "locked": a.locked and keep_locks,
                **totals.get(a.unit_id, empty),
            }
        )
    return rows, {}


def _adjacency(unit_ids: list[int]) -> sp.csr_matrix:
    index = {pk: i for i, pk in enumerate(unit_ids)}
    through = GeoUnit.adjacent.through
    pairs = through.objects.filter(from_geounit_id__in=unit_ids, to_geounit_id__in=unit_ids).values_list(
        "from_geounit_id", "to_geounit_id"
    )
    rows, cols = [], []
    for a, b in pairs:
        rows += [index[a], index[b]]
        cols += [index[b], index[a]]
    n = len(unit_ids)
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    matrix.data[:] = 1.0  # both directions may be stored; keep it a 0/1 matrix
    return matrix


def balance_problem_build(*, plan: Plan, parameters: dict, progress=None, should_stop=None) -> _Built:
    """The optimizer Problem for `plan` and cleaned `parameters` (see balance_parameters_clean)."""
    # The contract module directly: building needs no solver.
    from .optimizer.problem import Problem

    leaves = _leaves(plan, parameters["subtree"])
    metrics = parameters["metrics"]
    if parameters["level"] == "units":
        rows, frozen = _unit_entities(plan, leaves, parameters["keep_locks"])
    else:
        rows, frozen = _account_entities(plan, leaves, bool(parameters["subtree"]), parameters["keep_locks"])
    if not rows:
        raise ApplicationError(f"Plan '{plan.name}' has nothing with a location to balance.")
    anchors = capacity = None
    k = len(leaves)
    extra = 0
    if parameters["per_rep"]:
        anchors, capacity = _anchors(leaves)
    elif parameters["territories"]:
        k = parameters["territories"]
        extra = max(0, k - len(leaves))
    index = {t.pk: j for j, t in enumerate(leaves[:k])}
    current = np.array([index.get(r["current"], -1) for r in rows], dtype=int)
    locked = np.array([index.get(r["current"], -1) if r["locked"] else -1 for r in rows], dtype=int)
    if (np.array([r["locked"] for r in rows], dtype=bool) & (locked < 0)).any():
        raise ApplicationError(
            "Some locked assignments are in territories beyond the requested number; "
            "raise --territories or balance with --no-keep-locks.",
            {"territories": ["smaller than the territories holding locked assignments"]},
        )
    tolerance = parameters["tolerance"]
    problem = Problem(
        points=np.array([r["point"] for r in rows], dtype=float),
        metrics=_metric_matrix(rows, metrics),
        metric_names=list(metrics),
        k=k if anchors is None else None,
        anchors=anchors,
        capacity=capacity,
        tolerance=np.array(tolerance, dtype=float) if isinstance(tolerance, list) else float(tolerance),
        weights=np.array(parameters["weights"], dtype=float) if parameters["weights"] else None,
        locked=locked if (locked >= 0).any() else None,
        current=None if parameters["mode"] == "design" else current,
        disruption_weight=parameters["disruption_weight"],
        adjacency=_adjacency([r["pk"] for r in rows]) if parameters["level"] == "units" else None,
        time_limit=parameters["time_limit"],
        seed=parameters["seed"],
        progress=progress,
        should_stop=should_stop,
    )
    return _Built(
        problem=problem,
        entity_ids=[r["pk"] for r in rows],
        entity_labels=[r["name"] for r in rows],
        current_ids=[r["current"] for r in rows],
        leaves=leaves,
        current_index=current,
        extra_leaves=extra,
        frozen=frozen,
    )


# --- running --------------------------------------------------------------------------------------


def _set(job: BalanceJob, **fields) -> None:
    for name, value in fields.items():
        setattr(job, name, value)
    BalanceJob.objects.filter(pk=job.pk).update(**fields, updated=timezone.now())
    if fields.get("status") in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        event_emit(
            JOB_FINISHED,
            {
                "job_id": job.pk,
                "kind": "balance",
                "plan_id": job.plan_id,
                "status": job.status,
                "produced_plan_id": job.produced_plan_id,
                "error": job.error or None,
            },
        )


def _name_entities(message: str, built: _Built) -> str:
    """The solver names entities by index; a planner needs the account or unit."""

    def name(match: re.Match) -> str:
        i = int(match.group(1))
        if 0 <= i < len(built.entity_ids):
            return f"{match.group(0)} ({built.entity_labels[i]}, id {built.entity_ids[i]})"
        return match.group(0)

    return re.sub(r"\bEntity (\d+)\b", name, message)


def _choose(points: list) -> object:
    """The sweep point that becomes the scenario: the fewest moves among those within tolerance,
    else the best balance."""
    within = [p for p in points if p.solution.within_tolerance]
    if within:
        return min(within, key=lambda p: (p.moved_share, p.worst_deviation)).solution
    return min(points, key=lambda p: (p.worst_deviation, p.moved_share)).solution


def _match_design_labels(built: _Built, solution):
    """A design numbers its territories arbitrarily; give each the existing leaf that shares most of
    its accounts, so names and reps stay meaningful and fewer accounts change owner. Not with locks
    or anchors: there the solver's indices already are the leaves."""
    from scipy.optimize import linear_sum_assignment

    problem = built.problem
    if problem.current is not None or problem.anchors is not None or problem.locked is not None:
        return solution
    k = solution.totals.shape[0]
    known = (built.current_index >= 0) & (built.current_index < k)
    overlap = np.zeros((k, k))
    np.add.at(overlap, (solution.assignment[known], built.current_index[known]), 1.0)
    labels, leaves = linear_sum_assignment(-overlap)
    perm = np.empty(k, dtype=int)
    perm[labels] = leaves
    inverse = np.argsort(perm)
    return replace(
        solution,
        assignment=perm[solution.assignment],
        totals=solution.totals[inverse],
        targets=solution.targets[inverse],
        deviation=solution.deviation[inverse],
        contiguous=None if solution.contiguous is None else solution.contiguous[inverse],
    )


def _num(value) -> float | None:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def balance_job_run(*, job: BalanceJob, progress: Callable[[int, str], None] | None = None) -> BalanceJob:
    """Run a queued job: build the problem, solve (or sweep) with progress on the job row and
    cancel through `cancel_requested`, and write the answer as a new draft scenario.

    Not atomic as a whole on purpose: progress and status must be visible to other connections while
    it runs. Only writing the scenario is one transaction, so a failure leaves no half scenario.
    InfeasibleProblem and ApplicationError end the job as failed with their message; a cancel ends
    it as cancelled; anything else fails the job and is raised again for the worker's log."""
    from .optimizer import InfeasibleProblem, SolveCancelled, solve, sweep

    claimed = BalanceJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        started_at=timezone.now(),
        message="Building the problem",
        updated=timezone.now(),
    )
    job.refresh_from_db()
    if not claimed:
        return job  # cancelled while queued, or already run by another delivery of the task
    plan = job.plan
    parameters = job.parameters
    last_check = [0.0, False]
    last_percent = [-1]

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last_check[0] >= CANCEL_POLL_SECONDS:
            last_check[0] = now
            last_check[1] = BalanceJob.objects.filter(pk=job.pk, cancel_requested=True).exists()
        return bool(last_check[1])

    def report(percent: int, message: str) -> None:
        percent = max(0, min(100, int(percent)))
        if percent != last_percent[0]:
            last_percent[0] = percent
            _set(job, progress=percent, message=message[:255])
        if progress is not None:
            progress(percent, message)

    segments = len(parameters["sweep_weights"] or [0]) if parameters["mode"] == "sweep" else 1
    solve_state = {"segment": 0, "last": 0}

    def solver_progress(percent: int, message: str) -> None:
        percent = max(0, min(100, int(percent)))
        # sweep() solves once per weight, each reporting 0–100: a drop means the next solve began.
        if percent < solve_state["last"] and solve_state["segment"] < segments - 1:
            solve_state["segment"] += 1
        solve_state["last"] = percent
        done = (solve_state["segment"] * 100 + percent) / segments
        if segments > 1:
            message = f"{message} (run {solve_state['segment'] + 1} of {segments})"
        report(max(last_percent[0], SOLVE_FROM + int((SOLVE_TO - SOLVE_FROM) * done / 100)), message)

    built = None
    try:
        report(1, "Building the problem")
        built = balance_problem_build(
            plan=plan, parameters=parameters, progress=solver_progress, should_stop=should_stop
        )
        report(SOLVE_FROM, f"Solving for {built.problem.n} {parameters['level']}")
        sweep_points = []
        if parameters["mode"] == "sweep":
            sweep_points = list(sweep(built.problem, parameters["sweep_weights"]))
            solution = _choose(sweep_points)
        else:
            solution = solve(built.problem)
        solution = _match_design_labels(built, solution)
        if should_stop():
            raise SolveCancelled("cancel requested")
        report(SOLVE_TO, "Writing the scenario")
        new_plan, result = _write_scenario(job=job, built=built, solution=solution, sweep_points=sweep_points)
    except SolveCancelled:
        _set(job, status=JobStatus.CANCELLED, message="Cancelled", finished_at=timezone.now())
        return job
    except (InfeasibleProblem, ApplicationError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        if isinstance(exc, InfeasibleProblem) and built is not None:
            message = _name_entities(message, built)
        _set(job, status=JobStatus.FAILED, error=message, message="Failed", finished_at=timezone.now())
        return job
    except BaseException as exc:
        _set(
            job,
            status=JobStatus.FAILED,
            error=f"Unexpected error: {type(exc).__name__}: {exc}"[:2000],
            message="Failed",
            finished_at=timezone.now(),
        )
        raise
    _set(
        job,
        status=JobStatus.SUCCEEDED,
        progress=100,
        message=f"Wrote scenario '{new_plan.name}'",
        result=result,
        produced_plan=new_plan,
        finished_at=timezone.now(),
    )
    if progress is not None:
        progress(100, "Done")
    return job


# --- writing the scenario -------------------------------------------------------------------------


def _summary(*, built: _Built, solution, sweep_points, territories: list[Territory], parameters) -> dict:
    names = list(solution.metric_names)

    def by_metric(row) -> dict:
        return {m: _num(v) for m, v in zip(names, row, strict=True)}

    per_territory = [
        {
            "id": t.pk,
            "code": t.code,
            "name": t.name,
            "totals": by_metric(solution.totals[j]),
            "targets": by_metric(solution.targets[j]),
            "deviation": by_metric(solution.deviation[j]),
            **({"contiguous": bool(solution.contiguous[j])} if solution.contiguous is not None else {}),
        }
        for j, t in enumerate(territories)
    ]
    moved_idx = [int(i) for i in np.flatnonzero(solution.moved)]
    reasons = []
    code_by_pk = {t.pk: t.code for t in territories} | {t.pk: t.code for t in built.leaves}
    for i in moved_idx[:MAX_REASONS]:
        reasons.append(
            {
                "id": built.entity_ids[i],
                "name": built.entity_labels[i],
                "from": code_by_pk.get(built.current_ids[i]),
                "to": territories[int(solution.assignment[i])].code,
                "reason": solution.reasons.get(i, ""),
            }
        )
    return {
        "mode": parameters["mode"],
        "level": parameters["level"],
        "entities": built.problem.n,
        "metric_names": names,
        "territories": per_territory,
        "worst_deviation": by_metric(solution.worst_deviation),
        "within_tolerance": bool(solution.within_tolerance),
        "mean_distance_km": _num(solution.mean_distance_km),
        "kmeans_mean_distance_km": _num(solution.kmeans_mean_distance_km),
        "compactness_ratio": _num(solution.compactness_ratio),
        "moved_count": int(solution.moved_count),
        "moved_share": by_metric(solution.moved_share),
        "contiguous": None if solution.contiguous is None else bool(np.all(solution.contiguous)),
        "elapsed_seconds": _num(solution.elapsed_seconds),
        "disruption_weight": _num(solution.disruption_weight),
        "reasons": reasons,
        "reasons_truncated": len(moved_idx) > MAX_REASONS,
        "sweep": [
            {
                "disruption_weight": _num(p.disruption_weight),
                "moved_share": _num(p.moved_share),
                "worst_deviation": _num(p.worst_deviation),
                "compactness_ratio": _num(p.compactness_ratio),
                "within_tolerance": bool(p.solution.within_tolerance),
            }
            for p in sweep_points
        ],
        **built.frozen,
    }


def _scenario_territories(plan: Plan, built: _Built, k: int) -> list[Territory]:
    """The clone's leaves in the problem's order; new leaves when more territories were asked for."""
    by_code = {t.code: t for t in Territory.objects.filter(plan=plan)}
    territories = [by_code[t.code] for t in built.leaves[:k]]
    parent = territories[-1].parent if territories else None
    existing = set(by_code)
    n = 0
    while len(territories) < k:
        n += 1
        code = f"OPT-{n:02d}"
        if code in existing:
            continue
        territories.append(
            Territory.objects.create(
                plan=plan, parent=parent, code=code, name=f"New territory {n}", level_name="territory"
            )
        )
    return territories


@transaction.atomic
def _write_scenario(*, job: BalanceJob, built: _Built, solution, sweep_points) -> tuple[Plan, dict]:
    parameters = job.parameters
    source = job.plan
    name = parameters["name"] or f"{source.name} – balanced {timezone.localdate():%Y-%m-%d}"
    new_plan = plan_clone(plan=source, name=name, actor=job.created_by)
    k = built.problem.territory_count
    territories = _scenario_territories(new_plan, built, k)
    old_to_new = {old.pk: territories[j].pk for j, old in enumerate(built.leaves[:k])}
    old_to_new |= {
        t.pk: new.pk for t in built.leaves[k:] for new in Territory.objects.filter(plan=new_plan, code=t.code)
    }
    target = [territories[int(j)].pk for j in solution.assignment]
    current = [old_to_new.get(c) if c else None for c in built.current_ids]
    batch = uuid.uuid4()
    new_plan.version += 1
    Plan.objects.filter(pk=new_plan.pk).update(version=new_plan.version)
    moved_rows = [
        (built.entity_ids[i], current[i], target[i], solution.reasons.get(i, ""))
        for i in range(len(target))
        if current[i] != target[i]
    ]
    if parameters["level"] == "units":
        _write_units(new_plan, moved_rows, batch, job)
        plan_materialize(plan=new_plan, actor=job.created_by)
        new_plan.refresh_from_db(fields=["version"])
    else:
        _write_accounts(new_plan, moved_rows, batch, job)
    result = _summary(
        built=built,
        solution=solution,
        sweep_points=sweep_points,
        territories=territories,
        parameters=parameters,
    )
    result["produced_plan"] = new_plan.pk
    # Against the plan's real owners, also in design mode where the solver has no `current` to compare.
    result["reassigned_count"] = len(moved_rows)
    result["change_batch"] = str(batch)
    result["new_territories"] = built.extra_leaves
    if k < len(built.leaves):
        result["emptied_territories"] = [t.code for t in built.leaves[k:]]
    metrics = {key: value for key, value in result.items() if key not in ("reasons", "sweep")}
    Plan.objects.filter(pk=new_plan.pk).update(
        version=new_plan.version,
        metrics={
            **(source.metrics or {}),
            "balance": {"job": job.pk, "at": dt.datetime.now(dt.UTC).isoformat(), **metrics},
        },
        description=(source.description + "\n\n" if source.description else "")
        + f"Balanced by job {job.pk} ({parameters['mode']}, {parameters['level']}).",
        updated=timezone.now(),
    )
    new_plan.refresh_from_db()
    return new_plan, result


def _moves_table(cursor, moved_rows) -> None:
    cursor.execute(
        "CREATE TEMP TABLE tessera_balance_moves (entity_id bigint PRIMARY KEY, from_id bigint, "
        "to_id bigint NOT NULL, reason text) ON COMMIT DROP"
    )
    cursor.executemany("INSERT INTO tessera_balance_moves VALUES (%s, %s, %s, %s)", moved_rows)
    cursor.execute("ANALYZE tessera_balance_moves")


def _write_accounts(plan: Plan, moved_rows, batch, job) -> None:
    aa = AccountAssignment._meta.db_table
    with connection.cursor() as cursor:
        _moves_table(cursor, moved_rows)
        # An overlay row for the new owner would collide with the primary row moving there.
        cursor.execute(
            f"""DELETE FROM {aa} o USING tessera_balance_moves m
                WHERE o.plan_id = %s AND o.account_id = m.entity_id AND o.territory_id = m.to_id
                  AND o.role = %s""",
            [plan.pk, AssignmentRole.OVERLAY],
        )
        cursor.execute(
            f"""UPDATE {aa} a SET territory_id = m.to_id, source = %s, rule_id = NULL, unit_id = NULL,
                       updated = now()
                FROM tessera_balance_moves m
                WHERE a.plan_id = %s AND a.account_id = m.entity_id AND a.role = %s""",
            [AssignmentSource.OPTIMIZER, plan.pk, AssignmentRole.PRIMARY],
        )
        cursor.execute(
            f"""INSERT INTO {aa} (plan_id, account_id, territory_id, role, source, locked, created, updated)
                SELECT %s, m.entity_id, m.to_id, %s, %s, false, now(), now()
                FROM tessera_balance_moves m WHERE m.from_id IS NULL""",
            [plan.pk, AssignmentRole.PRIMARY, AssignmentSource.OPTIMIZER],
        )
        _changes(cursor, plan, batch, job, ChangeKind.ACCOUNT_MOVED, "account_id")
        cursor.execute("DROP TABLE tessera_balance_moves")


def _write_units(plan: Plan, moved_rows, batch, job) -> None:
    ua = UnitAssignment._meta.db_table
    with connection.cursor() as cursor:
        _moves_table(cursor, moved_rows)
        cursor.execute(
            f"""UPDATE {ua} a SET territory_id = m.to_id, source = %s, updated = now()
                FROM tessera_balance_moves m WHERE a.plan_id = %s AND a.unit_id = m.entity_id""",
            [AssignmentSource.OPTIMIZER, plan.pk],
        )
        _changes(cursor, plan, batch, job, ChangeKind.UNIT_MOVED, "unit_id")
        cursor.execute("DROP TABLE tessera_balance_moves")


def _changes(cursor, plan: Plan, batch, job, kind: str, column: str) -> None:
    # One Change per moved entity, one batch for the whole run, so undo can treat it as one action.
    cursor.execute(
        f"""INSERT INTO {Change._meta.db_table}
                (plan_id, actor_id, at, kind, batch, {column}, territory_from_id, territory_to_id,
                 plan_version, payload)
            SELECT %s, %s, now(), %s, %s, m.entity_id, m.from_id, m.to_id, %s,
                   jsonb_build_object('source', 'optimizer', 'job', %s::int, 'reason', m.reason)
            FROM tessera_balance_moves m ORDER BY m.entity_id""",
        [plan.pk, job.created_by_id, kind, batch, plan.version, job.pk],
    )

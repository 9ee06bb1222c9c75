"""Benchmark: quota allocation (issue 6: "1,000 territories × 12 months × 3 components ≤ 1 s").

Each case times Tessera's code and a peer measured in the same run, and prints one table with the
ratio and the issue's target. Cases live in CASES below; add a case (e.g. a dashboard measurement)
by appending a `Case`. A case that needs the database calls `django_setup()` first, which points
Django at its own database (tessera_bench_quotas by default, apart from bench/materialize.py's).

Allocation cases use a fixed-seed hierarchy: 10 regions > 10 districts > 10 territories (1,000 leaf
territories, 1,110 nodes), 1–3 reps per territory, lognormal potential and last-year bookings.
The peer is the straightforward implementation: a pure-Python loop over the nodes (top-down shares,
then largest-remainder rounding, months and rep splits one territory at a time).

    .venv/bin/python bench/quotas.py [--repeat 5] [--territories 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quotas import allocation  # noqa: E402  (after the path is set)

COMPONENTS = 3
MONTHS = 12


@dataclass
class Case:
    """One line of the table: what is measured, the issue's target, and two callables that each
    run the work once (set-up belongs in `prepare`, which is not timed)."""

    name: str
    size: str
    target_seconds: float | None
    prepare: Callable[[argparse.Namespace], object]
    tessera: Callable[[object], object]
    peer_name: str
    peer: Callable[[object], object] | None
    check: Callable[[object, object], str] | None = None
    cleanup: Callable[[object], None] | None = None  # e.g. remove rows other benches would trip over


def django_setup(database: str = "tessera_bench_quotas") -> None:
    """For cases that need the database: Django on its own database, migrated (created if missing)."""
    import django

    base_url = os.environ.get("DATABASE_URL", "postgis://postgres@127.0.0.1:5432/tessera")
    os.environ["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + database
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    # No worker runs here: tasks the measured code queues (relief, webhooks, re-warms) stay in this
    # process instead of waiting in the development broker for a `make run` worker and its database.
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    import psycopg

    with psycopg.connect(base_url.replace("postgis://", "postgresql://"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- allocation inputs ----------------------------------------------------------------------------


def hierarchy(territories: int, seed: int = 6) -> allocation.AllocationInput:
    """Regions > districts > territories, about ten children per node, `territories` leaves."""
    rng = np.random.default_rng(seed)
    per = max(2, round(territories ** (1 / 3)))
    regions = max(1, territories // (per * per))
    parent: list[int] = []
    for _ in range(regions):
        parent.append(-1)
    districts = []
    for r in range(regions):
        for _ in range(per):
            districts.append(len(parent))
            parent.append(r)
    leaves = []
    for i in range(territories):
        leaves.append(len(parent))
        parent.append(districts[i % len(districts)])
    n = len(parent)
    potential = np.zeros(n)
    potential[leaves] = rng.lognormal(13, 0.6, len(leaves))
    history = np.zeros((n, COMPONENTS))
    history[leaves] = rng.lognormal(11, 0.8, (len(leaves), COMPONENTS))
    season = rng.uniform(0.5, 1.5, (COMPONENTS, MONTHS)) * 1e6
    reps_per_leaf = rng.integers(1, 4, len(leaves))
    rep_node = np.repeat(np.array(leaves), reps_per_leaf)
    rep_weight = rng.choice([0.5, 0.8, 1.0, 1.0, 1.0], len(rep_node))
    targets = np.array([12_000_000_000, 6_000_000_000, 2_400_000_000], dtype=np.int64)  # cents
    return allocation.AllocationInput(
        parent=np.array(parent, dtype=np.int64),
        potential=potential,
        history=history,
        seasonality_history=season,
        targets=targets,
        rep_node=rep_node.astype(np.int64),
        rep_weight=rep_weight,
    )


# --- the peer: one node at a time in plain Python -------------------------------------------------


def _lr_python(total: int, weights: list[float], unit: int) -> list[int]:
    units, residue = divmod(total, unit)
    wsum = sum(weights)
    if wsum <= 0:
        weights, wsum = [1.0] * len(weights), float(len(weights))
    ideal = [units * w / wsum for w in weights]
    base = [int(x) for x in ideal]
    left = units - sum(base)
    order = sorted(range(len(weights)), key=lambda i: (-(ideal[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    out = [b * unit for b in base]
    if residue:
        out[max(range(len(weights)), key=lambda i: (weights[i], -i))] += residue
    return out


def allocate_python(data: allocation.AllocationInput, unit: int = 100_000) -> dict:
    """Potential method, no caps: the same result shape as allocation.allocate, node by node."""
    parent = data.parent.tolist()
    n = len(parent)
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parent):
        children.setdefault(p, []).append(i)
    potential = data.potential.tolist()

    def subtree_potential(i: int) -> float:
        kids = children.get(i)
        return potential[i] if not kids else sum(subtree_potential(k) for k in kids)

    weight = {i: subtree_potential(i) for i in range(n)}
    share = [0.0] * n

    def descend(p: int, base: float) -> None:
        kids = children.get(p, [])
        total = sum(weight[k] for k in kids)
        for k in kids:
            share[k] = base * (weight[k] / total if total else 1 / len(kids))
            descend(k, share[k])

    descend(-1, 1.0)
    leaves = [i for i in range(n) if i not in children]
    season = data.seasonality_history.tolist()
    reps_of: dict[int, list[int]] = {}
    for r, node in enumerate(data.rep_node.tolist()):
        reps_of.setdefault(node, []).append(r)
    rep_weight = data.rep_weight.tolist()
    node_month = {}
    rep_month = {}
    for c, target in enumerate(data.targets.tolist()):
        years = _lr_python(int(target), [share[i] for i in leaves], unit)
        for leaf, year in zip(leaves, years, strict=True):
            months = _lr_python(year, season[c], unit)
            node_month[(leaf, c)] = months
            reps = reps_of.get(leaf, [])
            for m, amount in enumerate(months):
                if reps:
                    for r, cents in zip(
                        reps, _lr_python(amount, [rep_weight[r] for r in reps], unit), strict=True
                    ):
                        rep_month.setdefault((r, c), [0] * MONTHS)[m] = cents

        def roll(i: int, c: int = c) -> list[int]:
            kids = children.get(i)
            if not kids:
                return node_month[(i, c)]
            sums = [0] * MONTHS
            for k in kids:
                for m, v in enumerate(roll(k)):
                    sums[m] += v
            node_month[(i, c)] = sums
            return sums

        for top in children[-1]:
            roll(top)
    return {"node_month": node_month, "rep_month": rep_month}


# --- cases ----------------------------------------------------------------------------------------


def _allocation_case(name: str, **kwargs) -> Case:
    def tessera(data):
        return allocation.allocate(data, unit=100_000, **kwargs)

    def check(data, result) -> str:
        exact = (result.node_year[data.parent < 0].sum(axis=0) == data.targets).all()
        return "sums exact" if exact else "SUMS OFF"

    return Case(
        name=name,
        size="",
        target_seconds=1.0,
        prepare=lambda args: hierarchy(args.territories),
        tessera=tessera,
        peer_name="pure-Python per-node loop" if not kwargs else "same loop (potential, no caps)",
        peer=allocate_python,
        check=check,
    )


def _service_prepare(args: argparse.Namespace):
    """A plan with the bench hierarchy in the bench database (rebuilt each run), its accounts'
    potential, reps, a fiscal year and a quota plan with targets."""
    django_setup(args.database)
    from decimal import Decimal

    from django.contrib.gis.geos import Point

    from accounts.models import Account, Rep
    from quotas import services
    from quotas.models import QuotaPlan
    from territories.models import AccountAssignment, Plan, Territory, TerritoryMembership

    data = hierarchy(args.territories)
    name = f"bench quotas {args.territories}"
    for old in Plan.objects.filter(name=name):
        QuotaPlan.objects.filter(territory_plan=old).delete()
        old.delete()
    Account.objects.filter(external_id__startswith="BENCHQ-").delete()
    Rep.objects.filter(external_id__startswith="BENCHQ-").delete()
    plan = Plan.objects.create(name=name)
    nodes: list[Territory] = []
    for i, p in enumerate(data.parent.tolist()):
        node = Territory.objects.create(
            plan=plan, code=f"N{i:05d}", name=f"Node {i}", parent=nodes[p] if p >= 0 else None
        )
        nodes.append(node)
    leaves = [i for i in range(len(nodes)) if i not in set(data.parent.tolist())]
    accounts = Account.objects.bulk_create(
        Account(external_id=f"BENCHQ-A{i}", name=f"Bench {i}", location=Point(0, 0, srid=4326),
                potential=Decimal(f"{data.potential[i]:.2f}"))
        for i in leaves
    )  # fmt: skip
    AccountAssignment.objects.bulk_create(
        AccountAssignment(plan=plan, account=a, territory=nodes[i], source="manual")
        for a, i in zip(accounts, leaves, strict=True)
    )
    reps = Rep.objects.bulk_create(
        Rep(external_id=f"BENCHQ-R{r}", name=f"Bench rep {r}", capacity_fte=Decimal(str(w)))
        for r, w in enumerate(data.rep_weight.tolist())
    )
    TerritoryMembership.objects.bulk_create(
        TerritoryMembership(territory=nodes[n], rep=rep)
        for rep, n in zip(reps, data.rep_node.tolist(), strict=True)
    )
    year = services.fiscal_year_create(year=2031)
    return services.quota_plan_create(
        name=name, territory_plan=plan, fiscal_year=year,
        targets={"new": "120000000", "renewal": "60000000", "upsell": "24000000"},
    )  # fmt: skip


def _service_run(quota_plan):
    from quotas import services

    return services.quota_plan_allocate(quota_plan=quota_plan, method="potential", unit="1000")


def _orm_peer(quota_plan):
    """The same rows written the plain Django way: delete, then bulk_create from the core's result."""
    from django.db import transaction

    from quotas import services
    from quotas.models import Quota

    with transaction.atomic():
        data, nodes, reps = services.allocation_inputs(quota_plan)
        result = allocation.allocate(data, unit=100_000)
        calendar = services.FiscalCalendar(quota_plan.fiscal_year)
        Quota.objects.filter(quota_plan=quota_plan, territory__isnull=False).delete()
        rows = []
        for owners, months in ((nodes, result.node_month), (reps, result.rep_month)):
            for i, owner in enumerate(owners):
                territory = owner.get("territory_id", owner.get("id"))
                rep = owner.get("rep_id")
                for c, component in enumerate(services.COMPONENTS):
                    for m, month in enumerate(calendar.months):
                        cents = int(months[i, c, m])
                        rows.append(
                            Quota(quota_plan=quota_plan, period=month, territory_id=territory, rep_id=rep,
                                  component=component, amount=services.from_cents(cents))
                        )  # fmt: skip
        Quota.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def _service_cleanup(quota_plan) -> None:
    """Leave the bench database as found: its quota plan protects the plan, and bench/materialize.py
    deletes every plan there."""
    from accounts.models import Account, Rep
    from quotas.models import QuotaPlan
    from territories.models import Plan

    plan_id = quota_plan.territory_plan_id
    QuotaPlan.objects.filter(territory_plan_id=plan_id).delete()
    Plan.objects.filter(pk=plan_id).delete()
    Account.objects.filter(external_id__startswith="BENCHQ-").delete()
    Rep.objects.filter(external_id__startswith="BENCHQ-").delete()


def _service_check(quota_plan, result) -> str:
    return f"{result['quotas']:,} quota rows written"


CASES: list[Case] = [
    _allocation_case("allocation: potential"),
    _allocation_case(
        "allocation: blend 0.6 + caps 0.5–2×",
        method="blend",
        blend_weight=0.6,
        caps=allocation.Caps(min_ratio=0.5, max_ratio=2.0),
    ),  # fmt: skip
    Case(
        name="allocation service (database)",
        size="",
        target_seconds=None,
        prepare=_service_prepare,
        tessera=_service_run,
        peer_name="ORM bulk_create of the months only",
        peer=_orm_peer,
        check=_service_check,
        cleanup=_service_cleanup,
    ),
    # Helper "dashboards" appends its dashboard measurement here.
]


def _dashboard_case() -> Case:
    """The manager dashboard for 200 reps over 1M bookings; the case lives in bench/dashboard.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_dashboard", Path(__file__).with_name("dashboard.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dashboard_case(Case, django_setup)


CASES.append(_dashboard_case())


def _time(fn: Callable[[object], object], data: object, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (the median is shown)")
    parser.add_argument("--territories", type=int, default=1000)
    parser.add_argument("--database", default="tessera_bench_quotas", help="for the cases that need one")
    parser.add_argument("--skip-database", action="store_true", help="only the pure cases")
    args = parser.parse_args()
    rows = []
    for case in CASES:
        if args.skip_database and (
            case.prepare is _service_prepare or getattr(case.prepare, "needs_database", False)
        ):
            continue
        data = case.prepare(args)
        ours, result = _time(case.tessera, data, args.repeat)
        peer = _time(case.peer, data, max(1, args.repeat // 2))[0] if case.peer else None
        size = case.size or f"{args.territories:,} territories × {MONTHS} months × {COMPONENTS} components"
        verdict = (
            "—" if case.target_seconds is None else ("meets" if ours <= case.target_seconds else "MISSES")
        )
        note = case.check(data, result) if case.check else ""
        if case.cleanup:
            case.cleanup(data)
        rows.append((case.name, size, ours, case.peer_name, peer, case.target_seconds, verdict, note))
    header = ("case", "size", "Tessera s", "peer", "peer s", "peer/Tessera", "target s", "", "check")
    table = [header]
    for name, size, ours, peer_name, peer, target, verdict, note in rows:
        table.append((
            name, size, f"{ours:.3f}", peer_name, "—" if peer is None else f"{peer:.3f}",
            "—" if peer is None else f"{peer / ours:.1f}×", "—" if target is None else f"≤ {target:g}",
            verdict, note,
        ))  # fmt: skip
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()

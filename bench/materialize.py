"""Benchmark: materializing a plan (resolving every account's owner) at 20k and 100k accounts.

Runs against its own database (tessera_bench by default, created if missing) with the real US
counties loaded by load_geography, accounts placed at ZIP centroids with jitter, 40 territories of
counties, 12 assignment rules, a postal-code list rule, 2% of accounts in corporate families and
0.5% locked. Peers, measured in the same run:
- "per-account resolver": the same resolver called once per account (resolve_account), on a
  sample and scaled up: what a naive loop would cost;
- "naive spatial join": one INSERT ... SELECT of account → county territory with ST_Covers, the
  floor for any geography-based materialization (no rules, no families, no locks).

    .venv/bin/python bench/materialize.py [--sizes 20000,100000] [--database tessera_bench]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--database", default="tessera_bench")
    parser.add_argument("--sample", type=int, default=500, help="accounts timed with the per-account peer")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgis://postgres@127.0.0.1:5432/tessera")
    os.environ["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + args.database
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    # No worker runs here: tasks the measured code queues (relief, webhooks, re-warms) stay in this
    # process instead of waiting in the development broker for a `make run` worker and its database.
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    _create_database(base_url, args.database)

    import django

    django.setup()
    from django.core.management import call_command

    from territories.choices import UnitLevel
    from territories.models import GeoUnit

    call_command("migrate", verbosity=0)
    if not GeoUnit.objects.filter(level=UnitLevel.COUNTY).exists():
        print("Loading geography into the bench database (once)...", flush=True)
        call_command("load_geography", verbosity=0)

    rows = []
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        rows.append(_run(size, args.sample))
    _print_table(rows)


def _create_database(base_url: str, name: str) -> None:
    import psycopg

    admin_url = base_url.replace("postgis://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def _build(size: int):
    """A fresh plan and `size` accounts (deterministic)."""
    import numpy as np
    from django.db import connection

    from accounts.models import Account, PostalCode
    from territories import services
    from territories.choices import UnitLevel
    from territories.models import AssignmentRule, GeoUnit, Plan, Territory, UnitAssignment

    rng = np.random.default_rng(7)
    Plan.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE accounts_account CASCADE")
    zips = list(PostalCode.objects.order_by("code").values_list("code", "location"))
    picks = rng.integers(0, len(zips), size)
    industries = np.array(["Manufacturing", "Healthcare", "Retail", "Technology", "Education", "Energy"])
    segments = np.array(["smb", "mid_market", "enterprise"])
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY accounts_account (external_id, name, location, geocode_quality, street, city, state,"
            " postal_code, country, industry, segment, revenue, potential, workload_hours, status,"
            " lead_source, attributes, created, updated) FROM STDIN"
        ) as copy,
    ):
        for i, pick in enumerate(picks):
            code, point = zips[pick]
            x = point.x + rng.normal(0, 0.01)
            y = point.y + rng.normal(0, 0.01)
            copy.write_row(
                (
                    f"B{i:07d}",
                    f"Bench account {i}",
                    f"SRID=4326;POINT({x} {y})",
                    "exact",
                    "",
                    "",
                    "",
                    code,
                    "US",
                    str(industries[i % len(industries)]),
                    str(segments[i % 3]),
                    float(rng.lognormal(11, 1.2)),
                    float(rng.lognormal(12, 1.2)),
                    10.0,
                    "customer",
                    "",
                    "{}",
                    "now",
                    "now",
                )
            )
    ids = list(Account.objects.order_by("id").values_list("id", flat=True))
    # 2% of accounts are children in corporate families of a few levels.
    family = rng.choice(len(ids), size // 50, replace=False)
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE accounts_account SET parent_id = %s WHERE id = %s",
            [(ids[(j + 1) % len(ids)], ids[j]) for j in family],
        )

    plan = services.plan_create(name=f"Bench {size}")
    territories = [
        Territory.objects.create(plan=plan, code=f"T{n:02d}", name=f"Territory {n}", color="#336699")
        for n in range(40)
    ]
    counties = list(GeoUnit.objects.filter(level=UnitLevel.COUNTY).order_by("code").values_list("id", "code"))
    UnitAssignment.objects.bulk_create(
        UnitAssignment(plan=plan, unit_id=uid, territory=territories[int(code[:2]) % 40], source="geography")
        for uid, code in counties
    )
    for n in range(12):
        AssignmentRule.objects.create(
            plan=plan,
            territory=territories[n],
            name=f"Rule {n}",
            priority=n,
            conditions=[
                {"field": "industry", "op": "eq", "value": str(industries[n % len(industries)])},
                {"field": "revenue", "op": "gte", "value": 400_000 + 50_000 * n},
            ],
        )
    postal = services.rule_create(
        plan=plan,
        territory=territories[39],
        name="ZIP list",
        priority=50,
        conditions=[{"field": "postal_code", "op": "in_postal_list"}],
        postal_codes=[zips[p][0] for p in rng.choice(len(zips), 2000, replace=False)],
    )
    assert postal.pk
    locked = [ids[j] for j in rng.choice(len(ids), size // 200, replace=False)]
    services.account_assignments_move(plan=plan, account_ids=locked, territory=territories[5], lock=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return plan, ids


def _run(size: int, sample: int) -> dict:
    from django.db import connection, transaction

    from accounts.models import Account
    from territories import services
    from territories.models import UnitAssignment
    from territories.resolver import resolve_account

    print(f"Building {size:,} accounts...", flush=True)
    plan, ids = _build(size)

    started = time.perf_counter()
    result = services.plan_materialize(plan=plan)
    ours = time.perf_counter() - started
    again_started = time.perf_counter()
    services.plan_materialize(plan=plan)
    ours_again = time.perf_counter() - again_started

    step = max(1, len(ids) // sample)
    sample_ids = ids[::step][:sample]
    started = time.perf_counter()
    for account in Account.objects.filter(pk__in=sample_ids).select_related("parent"):
        resolve_account(plan=plan, account=account)
    per_account = (time.perf_counter() - started) / len(sample_ids) * size

    with transaction.atomic(), connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(
            f"""CREATE TEMP TABLE bench_bare ON COMMIT DROP AS
                SELECT DISTINCT ON (a.id) a.id, ua.territory_id
                FROM {UnitAssignment._meta.db_table} ua
                JOIN territories_geounit u ON u.id = ua.unit_id
                JOIN accounts_account a ON ST_Covers(u.geom, a.location)
                WHERE ua.plan_id = %s ORDER BY a.id""",
            [plan.pk],
        )
        bare = time.perf_counter() - started
    return {
        "size": size,
        "ours": ours,
        "again": ours_again,
        "per_account": per_account,
        "bare": bare,
        "unassigned": result.unassigned,
        "by_source": result.by_source,
    }


def _print_table(rows: list[dict]) -> None:
    print()
    header = (
        f"{'accounts':>9} | {'materialize':>11} | {'re-run':>7} | {'per-account peer':>16} | {'ratio':>6} "
        f"| {'naive join peer':>14} | {'ratio':>6} | sources"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(r["by_source"].items()))
        print(
            f"{r['size']:>9,} | {r['ours']:>9.2f} s | {r['again']:>5.2f} s | {r['per_account']:>14.1f} s "
            f"| {r['per_account'] / r['ours']:>5.0f}× | {r['bare']:>12.2f} s "
            f"| {r['ours'] / r['bare']:>5.1f}× "
            f"| {sources}; unassigned {r['unassigned']}"
        )
    print()
    print("ratio (per-account) = how many times faster than resolving one account at a time;")
    print("ratio (naive join) = our time over one plain ST_Covers join to whole unit outlines.")


if __name__ == "__main__":
    main()

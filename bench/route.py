"""Benchmark: lead routing latency through the whole API stack (target: p95 ≤ 15 ms per lead).

Runs against its own database (tessera_bench_route by default, created if missing) loaded once with
`load_geography` and `load_demo` (20k accounts, 3,141 counties, an active plan of 40 territories),
plus a few rules so the rule step is exercised. Each case is a POST through Django's test client with
a `route` token (middleware, authentication, throttling, validation, resolver, serialization).
Peers, measured in the same run:
- "GET me/": the smallest authenticated endpoint, the floor of the framework stack;
- "resolver only": resolve_facts() called directly for the same leads, without HTTP.

    .venv/bin/python bench/route.py [--requests 300] [--database tessera_bench_route]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per case")
    parser.add_argument("--database", default="tessera_bench_route")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgis://postgres@127.0.0.1:5432/tessera")
    os.environ["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + args.database
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    # No worker runs here: tasks the measured code queues (relief, webhooks, re-warms) stay in this
    # process instead of waiting in the development broker for a `make run` worker and its database.
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    os.environ["DJANGO_DEBUG"] = "false"  # DEBUG keeps every query in memory and slows requests
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    os.environ["TESSERA_API_TOKEN_RATE"] = "1000000/minute"  # the budget is not what is measured
    _create_database(base_url, args.database)

    import django

    django.setup()
    from django.core.management import call_command

    from territories.models import Plan

    call_command("migrate", verbosity=0)
    if not Plan.objects.filter(status="active").exists():
        print("Loading geography and demo data into the bench database (once)...", flush=True)
        call_command("load_geography", verbosity=0)
        call_command("load_demo", verbosity=0)
    _print_table(_run(args.requests))


def _create_database(base_url: str, name: str) -> None:
    import psycopg

    admin_url = base_url.replace("postgis://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        with psycopg.connect(admin_url.rsplit("/", 1)[0] + "/" + name, autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS postgis")


def _ensure_rules(plan) -> None:
    from territories import services
    from territories.models import AssignmentRule, Territory

    if AssignmentRule.objects.filter(plan=plan, name__startswith="bench ").exists():
        return
    leaves = list(Territory.objects.filter(plan=plan, children__isnull=True).order_by("code")[:3])
    for i, (industry, floor) in enumerate(
        [("Healthcare", 50_000_000), ("Energy", 80_000_000), ("Retail", 90_000_000)]
    ):
        services.rule_create(
            plan=plan,
            territory=leaves[i],
            name=f"bench {industry}",
            priority=10 + i,
            conditions=[
                {"field": "industry", "op": "eq", "value": industry},
                {"field": "revenue", "op": "gte", "value": floor},
            ],
        )


def _timed(call, n: int) -> tuple[list[float], list[float]]:
    """Wall-clock and this process's CPU milliseconds per call. On a shared machine the wall clock
    includes waiting for a core; the CPU time is what the request itself costs in Python."""
    for _ in range(10):  # warm caches and connections
        call(0)
    wall, cpu = [], []
    for i in range(n):
        started, started_cpu = time.perf_counter(), time.process_time()
        call(i)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return wall, cpu


def _run(n: int) -> list[tuple[str, list[float]]]:
    import random

    from django.contrib.gis.geos import Point
    from django.test import Client

    from accounts.models import Account, PostalCode, User
    from accounts.services import api_token_create
    from territories import resolver
    from territories.selectors import plan_active_on

    plan = plan_active_on()
    _ensure_rules(plan)
    user = User.objects.filter(role="integration").first() or User.objects.create(
        username="bench-crm", role="integration"
    )
    _, key = api_token_create(user=user, name="bench route", scopes=["read", "route"])
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    rng = random.Random(11)
    zips = list(PostalCode.objects.order_by("?").values_list("code", flat=True)[: max(n, 100)])
    points = list(PostalCode.objects.order_by("?").values_list("location", flat=True)[: max(n, 100)])
    accounts = list(Account.objects.order_by("?").values_list("external_id", flat=True)[: max(n, 100)])
    industries = ["Healthcare", "Energy", "Retail", "Manufacturing", "Technology"]

    def post(body):
        response = client.post("/api/v1/route/", body, content_type="application/json")
        assert response.status_code == 200, response.content

    def by_postal(i):
        post(
            {
                "name": "Lead",
                "postal_code": zips[i % len(zips)],
                "industry": rng.choice(industries),
                "revenue": 1e8,
            }
        )

    def by_point(i):
        p = points[i % len(points)]
        post({"name": "Lead", "latitude": p.y, "longitude": p.x, "industry": rng.choice(industries)})

    def known(i):
        post({"external_id": accounts[i % len(accounts)]})

    def me(i):
        assert client.get("/api/v1/me/").status_code == 200

    def resolver_only(i):
        p = points[i % len(points)]
        facts = {"industry": rng.choice(industries), "revenue": 0, "location": Point(p.x, p.y, srid=4326)}
        resolver.resolve_facts(plan=plan, facts=facts)

    return [
        ("GET me/ (framework floor)", _timed(me, n)),
        ("resolver only (no HTTP)", _timed(resolver_only, n)),
        ("route/ lead by lat/lon", _timed(by_point, n)),
        ("route/ lead by postal code", _timed(by_postal, n)),
        ("route/ known account", _timed(known, n)),
    ]


def _print_table(rows) -> None:
    floor = statistics.quantiles(rows[0][1][0], n=20)[18]
    print(
        f"\n{'case':32} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p95 / floor':>12}"
        f" {'CPU p50 ms':>11}"
    )
    for name, (times, cpu) in rows:
        p95 = statistics.quantiles(times, n=20)[18]
        print(
            f"{name:32} {len(times):5d} {statistics.median(times):8.2f} {p95:8.2f} {max(times):8.2f} "
            f"{p95 / floor:12.2f} {statistics.median(cpu):11.2f}"
        )
    load = os.getloadavg()[0]
    print(
        f"\nTarget: route/ p95 ≤ 15 ms per lead on this machine "
        f"(load average now {load:.1f} on {os.cpu_count()} cores)."
    )


if __name__ == "__main__":
    main()

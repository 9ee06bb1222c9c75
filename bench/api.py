"""Benchmark: the REST API for CRM integrations, over real HTTP against a gunicorn server.

Measures, in its own database (tessera_bench_api by default, created if missing, with the US
geography and the demo data loaded once):
- bulk upsert of N new accounts through POST /api/v1/accounts/bulk/ (JSON, 10,000 rows per request,
  `--streams` requests in flight), then the same N again (all unchanged);
- the peer: PostgreSQL COPY of the same final rows (with their geometry) into a copy of the accounts
  table with the same indexes: the floor for any way of loading accounts;
- lead routing: POST /api/v1/route/ one lead at a time (p50/p95 latency) and /api/v1/route/batch/
  with 1,000 leads per request (leads/s);
- ownership at a date: GET /api/v1/accounts/{id}/ownership/?at=... (p50/p95);
- the peer for the latencies: GET /api/v1/me/, the cheapest authenticated request.
Request bodies are encoded before the clock starts (a CRM does that on its own machine). Run it
niced on a shared machine:

    nice -n 10 .venv/bin/python bench/api.py [--rows 100000] [--streams 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 10_000
BULK_TARGET = 20_000  # rows/s, issue 4
ROUTE_P95_TARGET_MS = 15.0  # issue 4
PREFIX = "BENCH-"
INDUSTRIES = ["Manufacturing", "Retail", "Healthcare", "Software", "Finance", "Energy", "Logistics"]
SEGMENTS = ["smb", "mid_market", "enterprise"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=2, help="bulk requests in flight at once")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--route-requests", type=int, default=500)
    parser.add_argument("--route-batches", type=int, default=10)
    parser.add_argument("--ownership-requests", type=int, default=300)
    parser.add_argument("--database", default="tessera_bench_api")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgis://postgres@127.0.0.1:5432/tessera")
    db_url = base_url.rsplit("/", 1)[0] + "/" + args.database
    os.environ["DATABASE_URL"] = db_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    # No worker runs here: tasks the measured code queues (relief, webhooks, re-warms) stay in this
    # process instead of waiting in the development broker for a `make run` worker and its database.
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ["DJANGO_DEBUG"] = "false"  # DEBUG keeps every query in memory: not what production runs
    os.environ["TESSERA_LOG_LEVEL"] = "WARNING"
    os.environ["TESSERA_API_TOKEN_RATE"] = "10000000/minute"  # measure the API, not the throttle
    _create_database(base_url, args.database)

    import django

    django.setup()
    token_key, account_ids = _prepare(args)
    rows = _make_rows(args.rows)
    port = args.port or _free_port()
    server = _start_server(port, args.workers)
    results: dict[str, object] = {}
    try:
        base = f"http://127.0.0.1:{port}/api/v1/"
        _wait_ready(base, token_key, server)
        results["bulk"] = _bench_bulk(base, token_key, rows, args.streams)
        results["copy"] = _bench_copy(args.rows)
        results["me"] = _latencies(base, token_key, "GET", lambda i: "me/", None, args.route_requests)
        results["route"] = _bench_route(base, token_key, args)
        results["route_batch"] = _bench_route_batch(base, token_key, args)
        results["ownership"] = _bench_ownership(base, token_key, account_ids, args)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    _print_table(results, args)


# --- setup ----------------------------------------------------------------------------------------


def _create_database(base_url: str, name: str) -> None:
    import psycopg

    admin_url = base_url.rsplit("/", 1)[0] + "/postgres"
    admin_url = admin_url.replace("postgis://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')  # name from our own argument, not from input
    db_url = base_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(db_url.replace("postgis://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")


def _prepare(args) -> tuple[str, list[int]]:
    from django.core.management import call_command
    from django.db import connection

    from accounts.choices import Role
    from accounts.models import User
    from accounts.services import api_token_create
    from territories.choices import UnitLevel
    from territories.models import AccountAssignment, GeoUnit
    from territories.selectors import plan_active_on

    call_command("migrate", verbosity=0)
    if not GeoUnit.objects.filter(level=UnitLevel.COUNTY).exists():
        print("Loading geography into the bench database (once)...", flush=True)
        call_command("load_geography", verbosity=0)
    if plan_active_on() is None:
        print("Loading the demo data into the bench database (once)...", flush=True)
        call_command("load_demo", verbosity=0)
    with connection.cursor() as cursor:
        # Bench rows have no assignments, bookings or changes: a plain DELETE is enough.
        cursor.execute("DELETE FROM accounts_account WHERE external_id LIKE %s", [PREFIX + "%"])
        cursor.execute("DROP TABLE IF EXISTS bench_copy_peer")
        cursor.execute("VACUUM ANALYZE accounts_account")
    user, _ = User.objects.get_or_create(username="bench-integration", defaults={"role": Role.INTEGRATION})
    _, key = api_token_create(user=user, name="bench/api.py", scopes=["read", "write", "route"])
    plan = plan_active_on()
    account_ids = list(
        AccountAssignment.objects.filter(plan=plan).order_by("?").values_list("account_id", flat=True)[:2000]
    )
    return key, account_ids


def _make_rows(n: int) -> list[dict]:
    from accounts.models import PostalCode

    rnd = random.Random(42)
    zips = list(PostalCode.objects.order_by("code").values_list("code", "city", "state"))
    rows = []
    for i in range(n):
        code, city, state = zips[rnd.randrange(len(zips))]
        row = {
            "external_id": f"{PREFIX}{i:07d}",
            "name": f"Bench account {i}",
            "city": city,
            "state": state,
            "postal_code": code,
            "industry": rnd.choice(INDUSTRIES),
            "segment": rnd.choice(SEGMENTS),
            "employees": rnd.randint(1, 20_000),
            "revenue": round(rnd.lognormvariate(11, 1.2), 2),
            "potential": round(rnd.lognormvariate(12, 1.0), 2),
            "workload_hours": rnd.randint(5, 400),
            "status": "customer" if rnd.random() < 0.4 else "prospect",
        }
        if rnd.random() < 0.5:  # half come with the CRM's own coordinates, half are geocoded by ZIP
            row["latitude"] = round(rnd.uniform(25, 49), 6)
            row["longitude"] = round(rnd.uniform(-124, -67), 6)
        if rnd.random() < 0.2:
            row["attributes"] = {"tier": rnd.choice("ABC"), "owner_email": f"owner{i % 97}@example.com"}
        rows.append(row)
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, workers: int) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--timeout", "600", "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=os.environ.copy())


def _wait_ready(base: str, key: str, server: subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"The server exited with {server.returncode}.")
        try:
            if requests.get(base + "me/", headers=_headers(key), timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # still starting
            pass
        time.sleep(0.3)
    raise SystemExit("The server did not answer within 120 s.")


def _headers(key: str, content_type: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Token {key}"}
    if content_type:
        headers["Content-Type"] = content_type
    return headers


# --- measurements ---------------------------------------------------------------------------------


def _bench_bulk(base: str, key: str, rows: list[dict], streams: int) -> dict:
    import requests

    bodies = [json.dumps(rows[i : i + BATCH]).encode() for i in range(0, len(rows), BATCH)]

    def send_all(expect: str) -> float:
        sessions: dict[int, requests.Session] = {}

        def send(index: int) -> dict:
            import threading

            session = sessions.setdefault(threading.get_ident(), requests.Session())
            response = session.post(
                base + "accounts/bulk/",
                data=bodies[index],
                headers=_headers(key, "application/json"),
                timeout=600,
            )
            if response.status_code != 200:
                raise SystemExit(f"bulk request {index} failed: {response.status_code} {response.text[:300]}")
            return response.json()["totals"]

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=streams) as pool:
            totals = list(pool.map(send, range(len(bodies))))
        elapsed = time.perf_counter() - started
        counted = sum(t[expect] for t in totals)
        if counted != len(rows):
            raise SystemExit(f"expected {len(rows)} {expect}, got {counted}: {totals[:2]}")
        return elapsed

    # Warm every worker up first (imports, first queries, a database connection): a dry run writes
    # nothing. Several rounds, `streams` at a time, so that each worker process gets some.
    warm = json.dumps([{**row, "external_id": "WARMUP-" + row["external_id"]} for row in rows[:500]]).encode()
    with ThreadPoolExecutor(max_workers=max(streams, 2)) as pool:
        list(
            pool.map(
                lambda _: requests.post(
                    base + "accounts/bulk/?dry_run=true", data=warm,
                    headers=_headers(key, "application/json"),
                    timeout=600,
                ).raise_for_status(),
                range(4 * max(streams, 2)),
            )
        )  # fmt: skip
    print(f"bulk: {len(rows):,} new accounts in {len(bodies)} requests, {streams} in flight...", flush=True)
    created = send_all("created")
    print(f"bulk: the same {len(rows):,} again...", flush=True)
    unchanged = send_all("unchanged")
    return {"rows": len(rows), "created_s": created, "unchanged_s": unchanged}


def _bench_copy(n: int) -> dict:
    """COPY the stored bench rows (as the API left them, geometry included) into a table LIKE the
    accounts table, with the same indexes."""
    from django.db import connection

    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_copy_peer (LIKE accounts_account INCLUDING ALL)")
        with cursor.copy(
            "COPY (SELECT * FROM accounts_account WHERE external_id LIKE 'BENCH-%%') TO STDOUT"
        ) as copy:
            for data in copy:
                buffer.write(data)
        payload = buffer.getvalue()
        started = time.perf_counter()
        with connection.cursor() as inner, inner.copy("COPY bench_copy_peer FROM STDIN") as copy:
            copy.write(payload)
        elapsed = time.perf_counter() - started
        cursor.execute("SELECT count(*) FROM bench_copy_peer")
        copied = cursor.fetchone()[0]
        cursor.execute("DROP TABLE bench_copy_peer")
    if copied != n:
        raise SystemExit(f"COPY peer copied {copied} rows, expected {n}")
    return {"rows": n, "s": elapsed}


def _latencies(base: str, key: str, method: str, path_of, body_of, count: int) -> list[float]:
    import requests

    session = requests.Session()
    headers = _headers(key, "application/json")
    out = []
    for i in range(count + 20):
        body = body_of(i) if body_of else None
        started = time.perf_counter()
        response = session.request(method, base + path_of(i), data=body, headers=headers, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{method} {path_of(i)}: {response.status_code} {response.text[:300]}")
        if i >= 20:  # the first requests warm up connections and caches
            out.append(elapsed)
    return out


def _leads(count: int, seed: int) -> list[dict]:
    from accounts.models import PostalCode

    rnd = random.Random(seed)
    zips = list(PostalCode.objects.order_by("code").values_list("code", flat=True)[::7])
    leads = []
    for i in range(count):
        lead = {"name": f"Lead {i}", "industry": rnd.choice(INDUSTRIES), "segment": rnd.choice(SEGMENTS)}
        if rnd.random() < 0.5:
            lead["postal_code"] = rnd.choice(zips)
        else:
            lead["latitude"], lead["longitude"] = rnd.uniform(25, 49), rnd.uniform(-124, -67)
        lead["revenue"] = str(round(rnd.uniform(1000, 500000), 2))
        leads.append(lead)
    return leads


def _bench_route(base: str, key: str, args) -> list[float] | str:
    leads = [json.dumps(lead).encode() for lead in _leads(args.route_requests + 20, 7)]
    try:
        return _latencies(base, key, "POST", lambda i: "route/", lambda i: leads[i], args.route_requests)
    except SystemExit as exc:
        return f"not measured: {exc}"


def _bench_route_batch(base: str, key: str, args) -> dict | str:
    import requests

    bodies = [json.dumps({"leads": _leads(1000, 100 + b)}).encode() for b in range(args.route_batches + 1)]
    session = requests.Session()
    headers = _headers(key, "application/json")
    elapsed = 0.0
    for index, body in enumerate(bodies):
        started = time.perf_counter()
        response = session.post(base + "route/batch/", data=body, headers=headers, timeout=600)
        if response.status_code != 200:
            return f"not measured: route/batch/ {response.status_code} {response.text[:200]}"
        if index:  # the first batch warms up
            elapsed += time.perf_counter() - started
    return {"leads": 1000 * args.route_batches, "s": elapsed}


def _bench_ownership(base: str, key: str, account_ids: list[int], args) -> list[float] | str:
    if not account_ids:
        return "not measured: no assigned accounts in the active plan"
    rnd = random.Random(3)
    today = dt.date.today()
    picks = [
        (rnd.choice(account_ids), today - dt.timedelta(days=rnd.randint(0, 60)))
        for _ in range(args.ownership_requests + 20)
    ]
    try:
        return _latencies(
            base, key, "GET", lambda i: f"accounts/{picks[i][0]}/ownership/?at={picks[i][1]}", None,
            args.ownership_requests,
        )  # fmt: skip
    except SystemExit as exc:
        return f"not measured: {exc}"


# --- report ---------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _print_table(results: dict, args) -> None:
    bulk, copy = results["bulk"], results["copy"]
    copy_rate = copy["rows"] / copy["s"]
    created_rate = bulk["rows"] / bulk["created_s"]
    unchanged_rate = bulk["rows"] / bulk["unchanged_s"]
    me = results["me"]
    me_p50, me_p95 = _pct(me, 50), _pct(me, 95)
    lines = [
        ("measure", "value", "peer", "ratio", "target"),
        (
            f"bulk upsert, {bulk['rows']:,} new accounts via API ({args.streams} streams)",
            f"{created_rate:,.0f} rows/s ({bulk['created_s']:.1f} s)",
            f"COPY {copy_rate:,.0f} rows/s ({copy['s']:.1f} s)",
            f"{created_rate / copy_rate:.2f}",
            f">= {BULK_TARGET:,} rows/s: {'met' if created_rate >= BULK_TARGET else 'MISSED'}",
        ),
        (
            f"same {bulk['rows']:,} re-sent (all unchanged)",
            f"{unchanged_rate:,.0f} rows/s ({bulk['unchanged_s']:.1f} s)",
            f"COPY {copy_rate:,.0f} rows/s",
            f"{unchanged_rate / copy_rate:.2f}",
            "",
        ),
    ]
    route = results["route"]
    if isinstance(route, str):
        lines.append(("lead routing, single (route/)", route, "", "", ""))
    else:
        p50, p95 = _pct(route, 50), _pct(route, 95)
        lines.append(
            (
                f"lead routing, single (route/), {len(route)} requests",
                f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
                f"GET me/ p50 {me_p50:.1f} ms, p95 {me_p95:.1f} ms",
                f"{p95 / me_p95:.1f} (p95)",
                f"p95 <= {ROUTE_P95_TARGET_MS:.0f} ms: {'met' if p95 <= ROUTE_P95_TARGET_MS else 'MISSED'}",
            )
        )
    batch = results["route_batch"]
    if isinstance(batch, str):
        lines.append(("lead routing, batch (route/batch/)", batch, "", "", ""))
    else:
        batch_rate = batch["leads"] / batch["s"]
        single_rate = 1000 / _pct(route, 50) if not isinstance(route, str) else None
        lines.append(
            (
                "lead routing, batch of 1,000 (route/batch/)",
                f"{batch_rate:,.0f} leads/s",
                f"single route/ {single_rate:,.0f} leads/s" if single_rate else "",
                f"{batch_rate / single_rate:.1f}" if single_rate else "",
                "",
            )
        )
    ownership = results["ownership"]
    if isinstance(ownership, str):
        lines.append(("ownership at a date", ownership, "", "", ""))
    else:
        p50, p95 = _pct(ownership, 50), _pct(ownership, 95)
        lines.append(
            (
                f"ownership at a date (accounts/{{id}}/ownership/?at=), {len(ownership)} requests",
                f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
                f"GET me/ p95 {me_p95:.1f} ms",
                f"{p95 / me_p95:.1f} (p95)",
                "",
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(5)]
    print()
    for n, line in enumerate(lines):
        print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(
        f"\nserver: gunicorn, {args.workers} sync workers, DEBUG off; {os.cpu_count()} CPUs; "
        f"database {args.database}"
    )


if __name__ == "__main__":
    main()

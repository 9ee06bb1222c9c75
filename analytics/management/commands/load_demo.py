"""`manage.py load_demo`: the demo data set (accounts, reps, starter plan, bookings, logins)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from analytics.demo import DEFAULT_ACCOUNTS, DEFAULT_SEED, DEFAULT_TERRITORIES, DemoSummary, demo_load
from tessera_common.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Load deterministic demo data: accounts placed by US city population, reps and managers, an active "
        "starter plan of regions > districts > territories built from counties, fiscal periods, two years "
        "of bookings and demo logins. Running it again adds only what is missing. Needs load_geography."
    )

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS, help="How many accounts.")
        parser.add_argument(
            "--seed", type=int, default=DEFAULT_SEED, help="Random seed (same seed, same data)."
        )
        parser.add_argument(
            "--territories",
            type=int,
            default=DEFAULT_TERRITORIES,
            help="Leaf territories in the starter plan.",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Delete the demo rows (DEMO- ids, the starter plan) and rebuild.",
        )
        parser.add_argument(
            "--cities", default=None, help="Cities file (default data/demo/us_cities.csv.gz)."
        )

    def handle(self, *args, **options):
        started = time.perf_counter()
        try:
            summary = demo_load(
                accounts=options["accounts"],
                seed=options["seed"],
                reset=options["reset"],
                territories=options["territories"],
                cities_path=options["cities"],
                show_progress=options["verbosity"] >= 1,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self._print(summary, time.perf_counter() - started)

    def _print(self, summary: DemoSummary, seconds: float) -> None:
        out = self.stdout.write
        if summary.reset:
            out("Reset: deleted " + ", ".join(f"{v} {k}" for k, v in summary.reset.items()))
        out(f"Accounts: {summary.accounts_created} created, {summary.accounts_total} demo accounts in all")
        plan = summary.plan
        if summary.plan_created:
            f = summary.plan_figures
            m = f["materialize"]
            out(
                f"Starter plan '{plan.name}' ({f['status']}): {f['regions']} regions > "
                f"{f['districts']} districts > {f['leaves']} territories "
                f"from {f['units']} counties; {f['reps']} reps"
            )
            out(
                f"  leaf potential: max {f['leaf_potential_max_over_mean']} / min "
                f"{f['leaf_potential_min_over_mean']} of the mean"
            )
            by_source = ", ".join(f"{k} {v}" for k, v in sorted(m["by_source"].items()))
            out(f"  assignments: {by_source}; unassigned {m['unassigned']}")
        elif plan is not None:
            out(f"Starter plan '{plan.name}' exists: kept")
        out(f"Fiscal periods: {summary.fiscal_periods_created} created")
        out(f"Bookings: {summary.bookings_created} created, {summary.bookings_total} demo bookings in all")
        out(
            "Seconds: " + ", ".join(f"{k} {v}" for k, v in summary.seconds.items()) + f"; total {seconds:.1f}"
        )
        for note in summary.notes:
            out(f"Note: {note}")

        out("")
        out("Demo logins (demo passwords, published here on purpose; do not use this data in production):")
        rows = [("username", "role", "password", "scope")] + [
            (x.username, x.role, x.password, x.scope) for x in summary.logins
        ]
        widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
        for n, row in enumerate(rows):
            out("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
            if n == 0:
                out("  " + "  ".join("-" * w for w in widths))

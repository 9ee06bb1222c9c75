"""manage.py load_geography: states, counties, adjacency and ZIP centroids from data/geo."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from territories.geodata import STATE_FIPS_BY_ABBR
from territories.geography import geography_load
from tessera_common.errors import ApplicationError

ALL = "ALL"


def parse_states(raw: str) -> list[str]:
    """'ca, nv' → ['CA', 'NV']; 'ALL' → every state abbreviation; unknown ones raise CommandError."""
    if raw.strip().upper() == ALL:
        return sorted(STATE_FIPS_BY_ABBR)
    states = sorted({part.strip().upper() for part in raw.split(",") if part.strip()})
    unknown = [s for s in states if s not in STATE_FIPS_BY_ABBR]
    if not states or unknown:
        raise CommandError(
            f"--zip-units: unknown state abbreviation(s) {', '.join(unknown) or repr(raw)}; "
            f"use USPS codes such as CA,NV or leave the list out for all states."
        )
    return states


class Command(BaseCommand):
    help = (
        "Load US states and counties (with adjacency) and ZIP centroids from the files shipped in "
        "data/geo; optionally ZIP-level units (Voronoi cells of ZIP centroids clipped to counties). "
        "Idempotent: a second run updates the same rows."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--zip-units",
            nargs="?",
            const=ALL,
            default=None,
            metavar="STATE,...",
            help="Also build ZIP-level units, for the listed states (e.g. CA,NV) or, without a list, all.",
        )
        parser.add_argument(
            "--skip-postal-codes", action="store_true", help="Do not load the ZIP centroid table."
        )
        parser.add_argument("--data-dir", type=Path, default=None, help="Folder of the geography files.")

    def handle(self, *args, **options):
        zip_states = parse_states(options["zip_units"]) if options["zip_units"] is not None else None
        try:
            summary = geography_load(
                zip_states=zip_states,
                postal_codes=not options["skip_postal_codes"],
                data_dir=options["data_dir"],
                progress=options["verbosity"] >= 1,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for name, value in summary.counts.items():
            self.stdout.write(f"{name.replace('_', ' ')}: {value:,}")
        for warning in summary.warnings:
            self.stdout.write(self.style.WARNING(warning))
        stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in summary.seconds.items())
        total = sum(summary.seconds.values())
        self.stdout.write(self.style.SUCCESS(f"Geography loaded in {total:.1f} s ({stages})."))

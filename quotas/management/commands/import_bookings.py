"""manage.py import_bookings FILE: create or update bookings from a CSV or XLSX file."""

from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import CommandError

from accounts.imports import map_table, parse_mapping, read_mapping_file, read_table
from accounts.management.commands.import_accounts import Command as ImportAccountsCommand
from accounts.management.commands.import_accounts import _ProgressBars
from quotas.imports import BOOKING_COLUMNS
from quotas.services import booking_bulk_upsert
from tessera_common.errors import ApplicationError


class Command(ImportAccountsCommand):
    """The account import's options, report and output, over the booking columns and service."""

    help = (
        "Create or update bookings (closed-won deals) from a CSV or XLSX file, matched by external id: "
        "external_id, account_external_id, amount, booked_on, component, optional rep_external_id. "
        "All or nothing unless --partial; prints every row's problems (row number, field, message)."
    )
    kind = "bookings"
    upsert = staticmethod(booking_bulk_upsert)
    map_example = "'Deal #=external_id,Acct=account_external_id,Close=booked_on,Notes=-'"

    def _import(self, options, report) -> None:
        path = Path(options["file"])
        quiet = options["verbosity"] == 0
        bars = _ProgressBars(disable=True if quiet else None)
        try:
            mapping = read_mapping_file(options["map_file"]) if options["map_file"] else {}
            for text in options["map"]:
                mapping.update(parse_mapping(text))
            table = read_table(path, sheet=options["sheet"], delimiter=options["delimiter"], progress=bars)
            mapped = map_table(table, BOOKING_COLUMNS, mapping)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        finally:
            bars.close()
        if not quiet:
            self.stdout.write(f"Read {len(mapped.rows):,} rows from {path.name} ({table.description}).")
            used = ", ".join(f"{h} → {t}" for h, t in mapped.columns.items() if t != "-")
            self.stdout.write(f"Columns: {used}.")
            for note in mapped.notes:
                self.stdout.write(self.style.WARNING(f"Note: {note}"))
        bars = _ProgressBars(disable=True if quiet else None)
        try:
            result = self.upsert(
                rows=mapped.rows,
                row_numbers=mapped.row_numbers,
                input_errors=mapped.input_errors,
                atomic=not options["partial"],
                dry_run=options["dry_run"],
                progress=bars,
            )
        finally:
            bars.close()
        lines = self._report_lines(result)
        if report:
            writer = csv.writer(report)
            writer.writerow(["row", "external_id", "status", "level", "field", "message"])
            writer.writerows(lines)
        self._print(result, lines, options)
        good = len(result.rows) - result.error_count
        if result.error_count and (not result.committed or not good):
            message = f"Nothing was written: {result.error_count:,} of {len(result.rows):,} rows have errors."
            if good and not options["partial"]:
                message += f" Fix them, or use --partial to write the {good:,} good rows."
            raise CommandError(message)

"""manage.py import_bookings FILE: create or update bookings from a CSV or XLSX file."""

from __future__ import annotations

from pathlib import Path

from accounts.imports import map_table, read_table
from accounts.management.commands.import_accounts import Command as ImportAccountsCommand
from accounts.management.commands.import_accounts import _ProgressBars
from quotas.imports import BOOKING_COLUMNS
from quotas.services import booking_bulk_upsert


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

    def _read(self, path: Path, mapping: dict, options, bars: _ProgressBars):
        table = read_table(path, sheet=options["sheet"], delimiter=options["delimiter"], progress=bars)
        return table, map_table(table, BOOKING_COLUMNS, mapping)

"""manage.py import_reps FILE: create or update reps from a CSV or XLSX file."""

from __future__ import annotations

from accounts.services import rep_bulk_upsert

from .import_accounts import Command as ImportCommand


class Command(ImportCommand):
    help = (
        "Create or update reps from a CSV or XLSX file, matched by external id. All or nothing "
        "unless --partial; prints every row's problems (row number, field, message)."
    )
    kind = "reps"
    upsert = staticmethod(rep_bulk_upsert)
    map_example = "'Employee #=external_id,Home Zip=home_postal_code,Notes=-'"

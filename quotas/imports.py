"""Booking files (CSV or XLSX) and CSV request bodies, read with accounts.imports' readers."""

from __future__ import annotations

from accounts.imports import ColumnSpec

from .services import BOOKING_FIELDS

BOOKING_COLUMNS = ColumnSpec(
    noun="booking",
    fields=BOOKING_FIELDS,
    aliases={
        "external_id": (
            "external id", "externalid", "id", "booking id", "deal id", "opportunity id", "crm id",
        ),
        "account_external_id": (
            "account external id", "account id", "accountid", "account crm id", "customer id",
        ),
        "amount": ("amount", "booking amount", "deal amount", "value", "acv", "bookings"),
        "booked_on": ("booked on", "close date", "closedate", "booking date", "date", "closed on"),
        "component": ("component", "type", "deal type", "opportunity type", "booking type"),
        "rep_external_id": ("rep external id", "rep id", "owner id", "seller id"),
    },
    required=("external_id", "account_external_id", "amount", "booked_on", "component"),
    pairs=(),
    custom_fields=False,
)  # fmt: skip

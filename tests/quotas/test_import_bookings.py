import datetime as dt
from decimal import Decimal

import openpyxl
import pytest
from django.core.management import CommandError, call_command

from quotas.models import Booking

pytestmark = pytest.mark.django_db


def test_import_bookings_csv_and_xlsx(world, tmp_path, capsys):
    account = world.accounts["E-T1"][0]
    path = tmp_path / "deals.csv"
    path.write_text(
        "Deal ID,Account ID,Amount,Close Date,Type\n"
        f"D-1,{account.external_id},$5000,2026-01-15,New business\n"
        f"D-2,{account.external_id},250.5,2026-02-01,upsell\n"
    )
    call_command("import_bookings", str(path))
    assert "created 2" in capsys.readouterr().out
    assert Booking.objects.get(external_id="D-1").amount == Decimal("5000.00")

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["external_id", "account_external_id", "amount", "booked_on", "component"])
    sheet.append(["D-2", account.external_id, 300, dt.datetime(2026, 2, 2), "upsell"])
    sheet.append(["D-3", "NO-SUCH", 1, dt.datetime(2026, 2, 2), "renewal"])
    xlsx = tmp_path / "deals.xlsx"
    book.save(xlsx)
    with pytest.raises(CommandError, match="Nothing was written"):
        call_command("import_bookings", str(xlsx))
    assert "row 3 (D-3) account_external_id" in capsys.readouterr().out
    assert Booking.objects.get(external_id="D-2").amount == Decimal("250.50")
    call_command("import_bookings", str(xlsx), "--partial")
    assert Booking.objects.get(external_id="D-2").booked_on == dt.date(2026, 2, 2)
    assert not Booking.objects.filter(external_id="D-3").exists()


def test_import_bookings_names_missing_columns(world, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,amount\nX,1\n")
    with pytest.raises(CommandError, match="Missing required columns"):
        call_command("import_bookings", str(path))

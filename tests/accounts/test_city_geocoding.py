"""Accounts without coordinates or a known ZIP are placed at their city's centre (quality 'city')."""

import pytest
from django.contrib.gis.geos import Point

from accounts.choices import GeocodeQuality
from accounts.models import Account, PostalCode
from accounts.services import account_bulk_upsert

pytestmark = pytest.mark.django_db


@pytest.fixture
def boston():
    PostalCode.objects.create(
        code="02108", location=Point(-71.06, 42.36, srid=4326), city="Boston", state="MA"
    )
    PostalCode.objects.create(
        code="02134", location=Point(-71.14, 42.36, srid=4326), city="Boston", state="MA"
    )


def test_unknown_zip_falls_back_to_the_city(boston):
    result = account_bulk_upsert(
        rows=[
            {"external_id": "C1", "name": "A", "postal_code": "02999", "city": " boston ", "state": "MA"},
            {"external_id": "C2", "name": "B", "city": "Boston", "state": "MA"},
            {"external_id": "C3", "name": "C", "postal_code": "02108"},
            {"external_id": "C4", "name": "D", "city": "Nowhere", "state": "MA"},
        ]
    )
    assert result.committed, result
    stored = {a.external_id: a for a in Account.objects.all()}
    assert stored["C1"].geocode_quality == GeocodeQuality.CITY
    assert stored["C1"].location.x == pytest.approx(-71.10) and stored["C1"].location.y == pytest.approx(
        42.36
    )
    assert stored["C2"].geocode_quality == GeocodeQuality.CITY
    assert stored["C3"].geocode_quality == GeocodeQuality.POSTAL
    assert stored["C4"].geocode_quality == GeocodeQuality.NONE and stored["C4"].location is None
    warning = next(r for r in result.rows if r.external_id == "C1").warnings
    assert "used the city centre" in str(warning)

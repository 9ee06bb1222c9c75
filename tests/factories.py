"""factory_boy factories for the domain, plus small geometry helpers for hand-made geography."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.gis.geos import MultiPolygon, Point, Polygon

from accounts.choices import AccountStatus, Role, Segment
from accounts.models import Account, Rep, User
from territories.choices import PlanStatus, UnitLevel
from territories.models import GeoUnit, Plan, Territory, TerritoryMembership, UnitAssignment


def square(x0: float, y0: float, size: float = 1.0) -> MultiPolygon:
    """A lon/lat square as a MultiPolygon in SRID 4326."""
    ring = ((x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size), (x0, y0))
    return MultiPolygon(Polygon(ring), srid=4326)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    role = Role.REP
    password = factory.django.Password("pw-for-tests")


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    external_id = factory.Sequence(lambda n: f"ACC-{n:06d}")
    name = factory.Sequence(lambda n: f"Account {n}")
    location = factory.LazyFunction(lambda: Point(0.5, 0.5, srid=4326))
    industry = "Manufacturing"
    segment = Segment.SMB
    status = AccountStatus.CUSTOMER
    revenue = Decimal("1000")
    potential = Decimal("5000")
    workload_hours = Decimal("10")


class RepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rep

    external_id = factory.Sequence(lambda n: f"REP-{n:04d}")
    name = factory.Sequence(lambda n: f"Rep {n}")
    home_location = factory.LazyFunction(lambda: Point(0.5, 0.5, srid=4326))


class GeoUnitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GeoUnit

    level = UnitLevel.COUNTY
    code = factory.Sequence(lambda n: f"{n:05d}")
    name = factory.Sequence(lambda n: f"County {n}")
    geom = factory.LazyFunction(lambda: square(0, 0))
    geom_simplified = factory.LazyAttribute(lambda u: u.geom)
    centroid = factory.LazyAttribute(lambda u: u.geom.point_on_surface)


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan

    name = factory.Sequence(lambda n: f"Plan {n}")
    status = PlanStatus.DRAFT


class TerritoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Territory

    plan = factory.SubFactory(PlanFactory)
    code = factory.Sequence(lambda n: f"T{n}")
    name = factory.Sequence(lambda n: f"Territory {n}")
    level_name = "territory"


def assign_unit(plan: Plan, unit: GeoUnit, territory: Territory) -> UnitAssignment:
    return UnitAssignment.objects.create(plan=plan, unit=unit, territory=territory, source="geography")


def add_member(
    territory: Territory, rep: Rep, role: str = "primary", share: str = "1"
) -> TerritoryMembership:
    return TerritoryMembership.objects.create(territory=territory, rep=rep, role=role, share=Decimal(share))

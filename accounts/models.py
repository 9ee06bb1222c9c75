"""Accounts (CRM companies), reps (sellers), logins with roles, API tokens, postal-code centroids."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractUser
from django.contrib.gis.db import models
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.validators import MinValueValidator
from django.db.models import Q

from .choices import AccountStatus, GeocodeQuality, Role, Segment, TokenScope


class TimeStamped(models.Model):
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class User(AbstractUser):
    """A login. Its role decides what it may do; scope (which territories) comes from the plan:
    a manager sees the subtrees of territories they manage, a rep the territories they belong to."""

    role = models.CharField(max_length=20, choices=Role.choices, default=Role.REP)

    @property
    def sees_everything(self) -> bool:
        return self.is_superuser or self.role in (Role.ADMIN, Role.PLANNER, Role.INTEGRATION)

    @property
    def can_plan(self) -> bool:
        return self.is_superuser or self.role in (Role.ADMIN, Role.PLANNER)


class ApiToken(TimeStamped):
    """A CRM integration's credential. Only a SHA-256 of the key is stored; the key is shown once.
    A token acts as its user, within its scopes."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True, help_text="First characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=10, choices=TokenScope.choices), default=list)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def new_key(cls) -> str:
        return "tsr_" + secrets.token_urlsafe(32)


class PostalCode(models.Model):
    """A US ZIP code's centroid, for geocoding accounts offline when the CRM sends no coordinates."""

    code = models.CharField(max_length=10, primary_key=True)
    location = models.PointField(srid=4326)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=2, blank=True)
    county_name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.city}, {self.state}"


class Account(TimeStamped):
    """A customer or prospect company from the CRM (not a login)."""

    external_id = models.CharField(max_length=64, unique=True, help_text="The CRM's id for this account.")
    name = models.CharField(max_length=255)
    location = models.PointField(srid=4326, null=True, blank=True)
    geocode_quality = models.CharField(
        max_length=10, choices=GeocodeQuality.choices, default=GeocodeQuality.NONE
    )
    street = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=2, blank=True)
    postal_code = models.CharField(max_length=10, blank=True, db_index=True)
    country = models.CharField(max_length=2, default="US")
    industry = models.CharField(max_length=100, blank=True, db_index=True)
    segment = models.CharField(max_length=20, choices=Segment.choices, blank=True, db_index=True)
    employees = models.PositiveIntegerField(null=True, blank=True)
    revenue = models.DecimalField(
        max_digits=16,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Annual revenue with us (customers) in the plan currency.",
    )
    potential = models.DecimalField(
        max_digits=16,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Estimated annual revenue opportunity.",
    )
    workload_hours = models.DecimalField(
        max_digits=9,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Yearly hours of selling effort this account needs.",
    )
    status = models.CharField(max_length=20, choices=AccountStatus.choices, default=AccountStatus.PROSPECT)
    lead_source = models.CharField(max_length=100, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="Corporate family: children follow the parent's territory unless overridden.",
    )
    attributes = models.JSONField(default=dict, blank=True, help_text="Custom CRM fields.")

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            models.Index(fields=["status"], name="account_status_idx"),
            GinIndex(fields=["attributes"], name="account_attributes_gin"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="account_not_own_parent"),
            models.CheckConstraint(condition=Q(revenue__gte=0), name="account_revenue_non_negative"),
            models.CheckConstraint(condition=Q(potential__gte=0), name="account_potential_non_negative"),
            models.CheckConstraint(condition=Q(workload_hours__gte=0), name="account_workload_non_negative"),
        ]

    def __str__(self) -> str:
        return self.name


class Rep(TimeStamped):
    """A seller. Capacity is in FTE (1.0 = full time); specialties are industries or segments."""

    external_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    user = models.OneToOneField(
        User,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rep",
        help_text="The login of this rep, if they use Tessera.",
    )
    home_location = models.PointField(srid=4326, null=True, blank=True)
    home_postal_code = models.CharField(max_length=10, blank=True)
    capacity_fte = models.DecimalField(max_digits=4, decimal_places=2, default=1)
    specialties = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    manager = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="direct_reports"
    )
    title = models.CharField(max_length=100, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(capacity_fte__gt=0) & Q(capacity_fte__lte=2), name="rep_capacity_between_0_and_2"
            ),
            models.CheckConstraint(condition=~Q(manager=models.F("id")), name="rep_not_own_manager"),
        ]

    def __str__(self) -> str:
        return self.name

"""Geography units, plans (scenarios), their territory hierarchies, assignments, rules, balance jobs
and the append-only change log."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.gis.db import models
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateRangeField, RangeOperators
from django.db.models import Q

from accounts.models import Account, Rep, TimeStamped

from .choices import (
    AssignmentRole,
    AssignmentSource,
    ChangeKind,
    JobStatus,
    MemberRole,
    PlanStatus,
    UnitLevel,
)


class DateRange(models.Func):
    """daterange(from, to, '[)'): an open upper bound (NULL) means "until further notice"."""

    function = "DATERANGE"
    output_field = DateRangeField()


class GeoUnit(TimeStamped):
    """A polygon building block of territories: a state, county, ZIP area or custom shape.

    `geom` is the full boundary used for containment; `geom_simplified` is what maps draw.
    Adjacency (shared boundary) is precomputed at load time for contiguity checks."""

    level = models.CharField(max_length=10, choices=UnitLevel.choices, db_index=True)
    code = models.CharField(max_length=20, help_text="FIPS code for states and counties, ZIP for ZIP areas.")
    name = models.CharField(max_length=255)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    geom = models.MultiPolygonField(srid=4326)
    geom_simplified = models.MultiPolygonField(srid=4326)
    centroid = models.PointField(srid=4326)
    area_sq_km = models.FloatField(default=0)
    attributes = models.JSONField(default=dict, blank=True, help_text="Population, market potential, ...")
    adjacent = models.ManyToManyField("self", symmetrical=True, blank=True)

    class Meta:
        ordering = ["level", "code"]
        constraints = [
            models.UniqueConstraint(fields=["level", "code"], name="geounit_unique_code_per_level")
        ]

    def __str__(self) -> str:
        return f"{self.get_level_display()} {self.code} {self.name}"


class Plan(TimeStamped):
    """One complete way of dividing the market (a scenario). Draft → in review → approved → active
    (effective-dated) → archived. `version` increases on every edit; a write carrying an older version
    is refused (optimistic locking). Exactly one plan is active at any date."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=PlanStatus.choices, default=PlanStatus.DRAFT)
    effective_from = models.DateField(null=True, blank=True)
    effective_to = models.DateField(null=True, blank=True, help_text="Exclusive; empty = open-ended.")
    based_on = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="scenarios"
    )
    version = models.PositiveIntegerField(default=1)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="plans"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Stored balance figures for comparison.")

    class Meta:
        ordering = ["-created"]
        constraints = [
            ExclusionConstraint(
                name="plan_one_active_per_date",
                expressions=[
                    (DateRange("effective_from", "effective_to", models.Value("[)")), RangeOperators.OVERLAPS)
                ],
                condition=Q(status=PlanStatus.ACTIVE),
            ),
            models.CheckConstraint(
                condition=~Q(status=PlanStatus.ACTIVE) | Q(effective_from__isnull=False),
                name="plan_active_has_effective_from",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True)
                | Q(effective_from__isnull=True)
                | Q(effective_to__gt=models.F("effective_from")),
                name="plan_effective_range_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Territory(TimeStamped):
    """A node of a plan's hierarchy (region > district > territory, any depth). Leaves own accounts
    and units; reps attach through memberships. A manager sees this node's whole subtree."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="territories")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    level_name = models.CharField(
        max_length=50, default="territory", help_text="region, district, territory, ..."
    )
    code = models.CharField(max_length=50)
    name = models.CharField(max_length=200)
    color = models.CharField(max_length=7, default="#888888", help_text="#rrggbb on the map.")
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_territories",
    )
    reps = models.ManyToManyField(Rep, through="TerritoryMembership", related_name="territories")

    class Meta:
        ordering = ["plan_id", "code"]
        verbose_name_plural = "territories"
        constraints = [
            models.UniqueConstraint(fields=["plan", "code"], name="territory_unique_code_per_plan"),
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="territory_not_own_parent"),
            models.CheckConstraint(
                condition=Q(color__regex=r"^#[0-9A-Fa-f]{6}$"), name="territory_color_hex"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class TerritoryMembership(TimeStamped):
    """A rep's place in a territory: primary owner, overlay specialist or support, with a share."""

    territory = models.ForeignKey(Territory, on_delete=models.CASCADE, related_name="memberships")
    rep = models.ForeignKey(Rep, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=MemberRole.choices, default=MemberRole.PRIMARY)
    share = models.DecimalField(max_digits=4, decimal_places=3, default=1, help_text="0–1 of the territory.")

    class Meta:
        ordering = ["territory_id", "role", "rep_id"]
        constraints = [
            models.UniqueConstraint(fields=["territory", "rep"], name="membership_unique_rep_per_territory"),
            models.CheckConstraint(
                condition=Q(share__gt=0) & Q(share__lte=1), name="membership_share_0_to_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rep} in {self.territory} ({self.role})"


class AssignmentRule(TimeStamped):
    """A rule of engagement: accounts matching all conditions go to `territory`. Lower priority
    numbers are tried first. Conditions: [{"field": "industry", "op": "in", "value": [...]}, ...];
    long postal-code lists live in RulePostalCode, used by the op "in_postal_list"."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="rules")
    territory = models.ForeignKey(Territory, on_delete=models.CASCADE, related_name="rules")
    name = models.CharField(max_length=200)
    priority = models.IntegerField(default=100)
    conditions = models.JSONField(default=list)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["plan_id", "priority", "id"]
        indexes = [models.Index(fields=["plan", "priority"], name="rule_plan_priority_idx")]

    def __str__(self) -> str:
        return f"{self.priority}: {self.name}"


class RulePostalCode(models.Model):
    """One postal code of a rule's list; lists run to thousands of codes, so they are rows."""

    rule = models.ForeignKey(AssignmentRule, on_delete=models.CASCADE, related_name="postal_codes")
    postal_code = models.CharField(max_length=10)

    class Meta:
        ordering = ["rule_id", "postal_code"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "postal_code"], name="rule_postal_code_unique")
        ]
        indexes = [models.Index(fields=["postal_code"], name="rule_postal_code_idx")]

    def __str__(self) -> str:
        return self.postal_code


class AccountAssignment(TimeStamped):
    """Which leaf territory owns an account in a plan, where that came from, and whether it is locked
    (a locked assignment survives rebuilding the plan and is kept by the optimizer)."""

    # No index of its own: the unique (plan, account, ...) indexes start with the plan.
    plan = models.ForeignKey(
        Plan, on_delete=models.CASCADE, related_name="account_assignments", db_index=False
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="assignments")
    territory = models.ForeignKey(Territory, on_delete=models.CASCADE, related_name="account_assignments")
    role = models.CharField(max_length=10, choices=AssignmentRole.choices, default=AssignmentRole.PRIMARY)
    source = models.CharField(max_length=10, choices=AssignmentSource.choices)
    locked = models.BooleanField(default=False)
    rule = models.ForeignKey(
        AssignmentRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    unit = models.ForeignKey(GeoUnit, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["plan_id", "account_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "account"],
                condition=Q(role=AssignmentRole.PRIMARY),
                name="account_assignment_one_primary_per_plan",
            ),
            models.UniqueConstraint(
                fields=["plan", "account", "territory"], name="account_assignment_unique_territory"
            ),
        ]
        indexes = [models.Index(fields=["plan", "territory"], name="account_assignment_terr_idx")]

    def __str__(self) -> str:
        return f"{self.account_id} → {self.territory_id} ({self.source})"


class UnitAssignment(TimeStamped):
    """Which leaf territory a geography unit belongs to in a plan."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="unit_assignments")
    unit = models.ForeignKey(GeoUnit, on_delete=models.CASCADE, related_name="assignments")
    territory = models.ForeignKey(Territory, on_delete=models.CASCADE, related_name="unit_assignments")
    source = models.CharField(
        max_length=10, choices=AssignmentSource.choices, default=AssignmentSource.MANUAL
    )
    locked = models.BooleanField(default=False)

    class Meta:
        ordering = ["plan_id", "unit_id"]
        constraints = [models.UniqueConstraint(fields=["plan", "unit"], name="unit_assignment_one_per_plan")]
        indexes = [models.Index(fields=["plan", "territory"], name="unit_assignment_terr_idx")]

    def __str__(self) -> str:
        return f"{self.unit_id} → {self.territory_id}"


class BalanceJob(TimeStamped):
    """One optimizer run on a plan: parameters, progress 0–100, result metrics and the new scenario
    it produced. It never overwrites the input plan."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="balance_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    parameters = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=255, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    produced_plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_by_jobs"
    )
    cancel_requested = models.BooleanField(default=False)
    celery_task_id = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__lte=100), name="balance_job_progress_max_100")
        ]

    def __str__(self) -> str:
        return f"Balance {self.plan_id} ({self.status})"


class Change(models.Model):
    """An append-only record of who changed what in a plan, from where to where. Drives undo/redo,
    audit and "who owned account X on date D". A database trigger refuses UPDATE on this table;
    an undo is a new Change that `reverts` the earlier one."""

    # No index of its own: change_plan_at_idx starts with the plan (one index fewer to write per
    # change; a 1,000-account move writes 1,000 changes).
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="changes", db_index=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=30, choices=ChangeKind.choices)
    batch = models.UUIDField(default=uuid.uuid4, db_index=True, help_text="Changes made by one action.")
    # Indexed by change_account_plan_at_idx, which starts with the account.
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes", db_index=False
    )
    unit = models.ForeignKey(
        GeoUnit, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    territory_from = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    territory_to = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    plan_version = models.PositiveIntegerField(default=0, help_text="The plan version this change produced.")
    payload = models.JSONField(default=dict, blank=True, help_text="Codes, names and values at the time.")
    reverts = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reverted_by"
    )

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["plan", "at"], name="change_plan_at_idx"),
            # "The first move of this account in this plan after day D": crediting a moved account's
            # bookings asks it once per booking (analytics.selectors).
            models.Index(fields=["account", "plan", "at"], name="change_account_plan_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.get_kind_display()}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValueError("Changes are append-only.")
        super().save(*args, **kwargs)


class PlanComment(TimeStamped):
    """A remark on a scenario, mostly while it is in review: managers and reps comment, the approver
    reads them before approving. `territory` narrows the remark to one territory when given."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="plan_comments"
    )
    territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.SET_NULL, related_name="comments"
    )
    body = models.TextField()
    plan_status = models.CharField(
        max_length=20, blank=True, help_text="The plan's status when the comment was written."
    )

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["plan", "created"], name="plan_comment_plan_created_idx")]

    def __str__(self) -> str:
        return f"{self.author} on {self.plan}: {self.body[:40]}"


class BaseTile(models.Model):
    """An encoded base tile of the zooms that show only states and counties (below
    tiles.FINE_UNIT_MIN_ZOOM), kept once rendered: every server process and restart reads it
    instead of encoding a thousand county outlines again (a national z4 tile takes ~50 ms).
    A statement trigger on territories_geounit empties the table on any geography write."""

    z = models.PositiveSmallIntegerField()
    x = models.PositiveIntegerField()
    y = models.PositiveIntegerField()
    data = models.BinaryField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["z", "x", "y"], name="base_tile_unique_address")]

    def __str__(self) -> str:
        return f"base tile {self.z}/{self.x}/{self.y}"

from django.db import models


class Component(models.TextChoices):
    NEW_BUSINESS = "new", "New business"
    RENEWAL = "renewal", "Renewal"
    UPSELL = "upsell", "Upsell"


class PeriodKind(models.TextChoices):
    YEAR = "year", "Fiscal year"
    QUARTER = "quarter", "Quarter"
    MONTH = "month", "Month"


class QuotaPlanStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    APPROVED = "approved", "Approved"
    ACTIVE = "active", "Active"
    ARCHIVED = "archived", "Archived"


class AllocationMethod(models.TextChoices):
    """How a parent's quota is split among its children: by their accounts' potential, by what they
    booked last fiscal year, or a weighted blend of the two."""

    POTENTIAL = "potential", "Potential"
    HISTORY = "history", "History (last year's bookings)"
    BLEND = "blend", "Blend of potential and history"


class AdjustmentStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved and applied"
    REJECTED = "rejected", "Rejected"


class QuotaChangeKind(models.TextChoices):
    """Why a quota amount changed: the company target was set, an allocation ran, an approved
    adjustment moved quota between siblings, or accounts moved mid-period (relief)."""

    TARGET = "target", "Company target set"
    ALLOCATION = "allocation", "Allocation"
    ADJUSTMENT = "adjustment", "Approved adjustment"
    RELIEF = "relief", "Quota relief"


class ReliefStatus(models.TextChoices):
    APPLIED = "applied", "Applied"
    SKIPPED = "skipped", "Not relieved"


class GoalMetric(models.TextChoices):
    """Activity and retention goals kept beside quota."""

    CALLS_PER_WEEK = "calls_per_week", "Calls per week"
    MEETINGS_PER_WEEK = "meetings_per_week", "Meetings per week"
    RETENTION_RATE = "retention_rate", "Retention rate"

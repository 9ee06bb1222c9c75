from django.db import models


class UnitLevel(models.TextChoices):
    """Geography levels from coarse to fine; the resolver prefers the finest assigned unit."""

    STATE = "state", "State"
    COUNTY = "county", "County"
    ZIP = "zip", "ZIP area"
    CUSTOM = "custom", "Custom shape"


# Larger number = finer: when several assigned units contain an account, the finest decides.
UNIT_LEVEL_PRECEDENCE = {UnitLevel.STATE: 1, UnitLevel.COUNTY: 2, UnitLevel.ZIP: 3, UnitLevel.CUSTOM: 4}


class PlanStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    ACTIVE = "active", "Active"
    ARCHIVED = "archived", "Archived"


class MemberRole(models.TextChoices):
    PRIMARY = "primary", "Primary"
    OVERLAY = "overlay", "Overlay"
    SUPPORT = "support", "Support"


class AssignmentRole(models.TextChoices):
    PRIMARY = "primary", "Primary owner"
    OVERLAY = "overlay", "Overlay"


class AssignmentSource(models.TextChoices):
    """Where an assignment came from: the resolver's steps, a planner's hand, or the optimizer."""

    RULE = "rule", "Assignment rule"
    GEOGRAPHY = "geography", "Geography"
    PARENT = "parent", "Parent account"
    MANUAL = "manual", "Manual"
    OPTIMIZER = "optimizer", "Optimizer"


class RuleOperator(models.TextChoices):
    EQ = "eq", "equals"
    NE = "ne", "does not equal"
    IN = "in", "is one of"
    NOT_IN = "not_in", "is none of"
    GTE = "gte", "at least"
    LTE = "lte", "at most"
    GT = "gt", "more than"
    LT = "lt", "less than"
    PREFIX = "prefix", "starts with"
    IN_POSTAL_LIST = "in_postal_list", "postal code in the rule's list"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class ChangeKind(models.TextChoices):
    ACCOUNT_MOVED = "account_moved", "Account moved"
    UNIT_MOVED = "unit_moved", "Unit moved"
    LOCK_CHANGED = "lock_changed", "Lock changed"
    TERRITORY_CREATED = "territory_created", "Territory created"
    TERRITORY_UPDATED = "territory_updated", "Territory updated"
    TERRITORY_DELETED = "territory_deleted", "Territory deleted"
    MEMBERSHIP_CHANGED = "membership_changed", "Reps changed"
    RULE_CHANGED = "rule_changed", "Rule changed"
    PLAN_MATERIALIZED = "plan_materialized", "Plan rebuilt from rules and geography"
    PLAN_STATUS = "plan_status", "Plan status changed"
    PLAN_CREATED = "plan_created", "Plan created"

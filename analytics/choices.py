from django.db import models


class WarningKind(models.TextChoices):
    """The warning signs the daily check looks for."""

    ATTAINMENT_GAP = "attainment_gap", "Attainment gap between territories"
    OVER_CAPACITY = "over_capacity", "Rep over capacity"
    BALANCE_DRIFT = "balance_drift", "Balance drift since publish"
    UNASSIGNED_ACCOUNTS = "unassigned_accounts", "Unassigned accounts"
    TERRITORY_WITHOUT_REP = "territory_without_rep", "Territory without a rep"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


# Sort order for lists: the most severe first.
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


class CheckTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Daily schedule"
    MANUAL = "manual", "Check now"


class SnapshotSource(models.TextChoices):
    PUBLISH = "publish", "Taken when the plan was published"
    BASELINE = "baseline", "First check after publish (no snapshot from publish)"

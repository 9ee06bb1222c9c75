from django.db import models

from tessera_common.events import EVENTS


class WebhookEvent(models.TextChoices):
    """The domain events a subscription may follow (tessera_common.events)."""

    PLAN_PUBLISHED = "plan.published", "A plan was published"
    ASSIGNMENT_CHANGED = "assignment.changed", "Accounts moved in the active plan"
    JOB_FINISHED = "job.finished", "A background job finished"


assert set(WebhookEvent.values) == set(EVENTS), "keep WebhookEvent in step with tessera_common.events"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ImportKind(models.TextChoices):
    ACCOUNTS = "accounts", "Accounts"
    REPS = "reps", "Reps"
    TERRITORIES = "territories", "Territories of a plan"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"

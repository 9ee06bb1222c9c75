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

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    PLANNER = "planner", "Sales operations planner"
    MANAGER = "manager", "Sales manager"
    REP = "rep", "Rep"
    INTEGRATION = "integration", "CRM integration"


class Segment(models.TextChoices):
    SMB = "smb", "SMB"
    MID_MARKET = "mid_market", "Mid-market"
    ENTERPRISE = "enterprise", "Enterprise"


class AccountStatus(models.TextChoices):
    PROSPECT = "prospect", "Prospect"
    CUSTOMER = "customer", "Customer"
    CHURNED = "churned", "Churned"
    INACTIVE = "inactive", "Inactive"


class GeocodeQuality(models.TextChoices):
    """How trustworthy an account's location is: the CRM's own coordinates beat a ZIP centroid."""

    EXACT = "exact", "Exact coordinates"
    POSTAL = "postal", "Postal-code centroid"
    CITY = "city", "City centroid"
    NONE = "none", "No location"


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    ROUTE = "route", "Route leads"

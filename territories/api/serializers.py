import math

from rest_framework import serializers

from accounts.choices import AccountStatus, Segment
from territories.balancing import LEVELS, METRICS, MODES
from territories.choices import PlanStatus, UnitLevel
from territories.diff import DIFF_DEFAULT_LIMIT, DIFF_MAX_LIMIT
from territories.models import AccountAssignment, BalanceJob, Plan
from territories.ownership import FEED_DEFAULT_LIMIT, FEED_MAX_LIMIT
from territories.routing import ROUTE_BATCH_MAX
from territories.selectors import GEOUNIT_DEFAULT_LIMIT, GEOUNIT_MAX_LIMIT


class BalanceParametersSerializer(serializers.Serializer):
    """What a planner may ask of the optimizer; the service checks the combinations."""

    mode = serializers.ChoiceField(choices=MODES, default="rebalance")
    level = serializers.ChoiceField(choices=LEVELS, default="accounts")
    metrics = serializers.ListField(child=serializers.ChoiceField(choices=METRICS), required=False)
    tolerance = serializers.JSONField(required=False, help_text="A number (0.05 = ±5%) or one per metric.")
    territories = serializers.IntegerField(required=False, min_value=1)
    per_rep = serializers.BooleanField(default=False)
    keep_locks = serializers.BooleanField(default=True)
    disruption_weight = serializers.FloatField(required=False, min_value=0)
    weights = serializers.ListField(child=serializers.FloatField(min_value=0), required=False)
    sweep_weights = serializers.ListField(child=serializers.FloatField(min_value=0), required=False)
    subtree = serializers.CharField(required=False, help_text="Balance only under this territory code.")
    name = serializers.CharField(required=False, max_length=200)
    time_limit = serializers.FloatField(required=False, min_value=1)
    seed = serializers.IntegerField(required=False)


class BalanceJobSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = BalanceJob
        fields = [
            "id",
            "plan",
            "created_by",
            "status",
            "progress",
            "message",
            "parameters",
            "result",
            "error",
            "produced_plan",
            "cancel_requested",
            "created",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


# ---------------------------------------------------------------------------------------------
# Plans


class PlanSerializer(serializers.ModelSerializer):
    """A plan as the API shows it. `version` goes back with every write (optimistic locking)."""

    owner = serializers.CharField(source="owner.username", read_only=True, allow_null=True, default=None)
    based_on_name = serializers.CharField(
        source="based_on.name", read_only=True, allow_null=True, default=None
    )
    status_label = serializers.CharField(source="get_status_display", read_only=True)

    class Meta:
        model = Plan
        fields = [
            "id",
            "name",
            "description",
            "status",
            "status_label",
            "effective_from",
            "effective_to",
            "based_on",
            "based_on_name",
            "version",
            "owner",
            "published_at",
            "metrics",
            "created",
            "updated",
        ]
        read_only_fields = fields


class VersionField(serializers.IntegerField):
    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault(
            "help_text", "The plan version you last read; or send it as the If-Match header. Stale → 409."
        )
        super().__init__(**kwargs)


class PlanCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class PlanUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    version = VersionField(required=False)


class PlanCloneSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class PlanTransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[PlanStatus.DRAFT, PlanStatus.IN_REVIEW, PlanStatus.APPROVED, PlanStatus.ARCHIVED]
    )
    version = VersionField(required=False)


class PlanPublishSerializer(serializers.Serializer):
    effective_from = serializers.DateField()
    version = VersionField(required=False)


# ---------------------------------------------------------------------------------------------
# Metrics and territories (documentation shapes: the figures are built in territories.metrics)


class MetricValuesSerializer(serializers.Serializer):
    accounts = serializers.IntegerField()
    revenue = serializers.FloatField()
    potential = serializers.FloatField()
    workload = serializers.FloatField()


class MetricFractionsSerializer(serializers.Serializer):
    accounts = serializers.FloatField(allow_null=True)
    revenue = serializers.FloatField(allow_null=True)
    potential = serializers.FloatField(allow_null=True)
    workload = serializers.FloatField(allow_null=True)


class RepRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    role = serializers.CharField(help_text="primary, overlay or support; primary reps come first.")
    share = serializers.FloatField()
    capacity_fte = serializers.FloatField()


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class PlanRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField(required=False)
    version = serializers.IntegerField(required=False)


class TerritoryMetricsSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    level_name = serializers.CharField()
    parent_id = serializers.IntegerField(allow_null=True)
    path = serializers.ListField(child=serializers.CharField(), help_text="Names from the root down.")
    path_codes = serializers.ListField(child=serializers.CharField(), help_text="Codes from the root down.")
    is_leaf = serializers.BooleanField()
    color = serializers.CharField()
    manager = UserRefSerializer(allow_null=True)
    reps = RepRefSerializer(many=True)
    metrics = MetricValuesSerializer()
    target = MetricValuesSerializer(allow_null=True)
    deviation = MetricFractionsSerializer(allow_null=True)
    outside_tolerance = serializers.BooleanField()
    locked_accounts = serializers.IntegerField()
    units = serializers.IntegerField()
    contiguous = serializers.BooleanField(allow_null=True)


class PlanMetricsSerializer(serializers.Serializer):
    plan = PlanRefSerializer()
    metric_names = serializers.ListField(child=serializers.CharField())
    tolerance = serializers.FloatField()
    totals = MetricValuesSerializer()
    unassigned = MetricValuesSerializer(
        allow_null=True,
        help_text="Only for users who see the whole plan (unassigned accounts have no scope).",
    )
    territories = TerritoryMetricsSerializer(many=True)


class GeoJSONFeatureCollectionSerializer(serializers.Serializer):
    type = serializers.CharField(default="FeatureCollection")
    features = serializers.ListField(child=serializers.DictField())


# ---------------------------------------------------------------------------------------------
# Assignments


class AssignmentSerializer(serializers.ModelSerializer):
    account_id = serializers.IntegerField(read_only=True)
    account_external_id = serializers.CharField(source="account.external_id", read_only=True)
    account_name = serializers.CharField(source="account.name", read_only=True)
    territory_id = serializers.IntegerField(read_only=True)
    territory_code = serializers.CharField(source="territory.code", read_only=True)
    rule_id = serializers.IntegerField(read_only=True, allow_null=True)
    unit_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = AccountAssignment
        fields = [
            "account_id",
            "account_external_id",
            "account_name",
            "territory_id",
            "territory_code",
            "role",
            "source",
            "locked",
            "rule_id",
            "unit_id",
        ]
        read_only_fields = fields


class AssignmentMoveSerializer(serializers.Serializer):
    account_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=100_000, allow_empty=False
    )
    unit_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=100_000, allow_empty=False
    )
    territory = serializers.IntegerField(min_value=1, help_text="The leaf territory that takes them.")
    lock = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="true locks, false unlocks, null keeps."
    )
    version = VersionField(required=False)

    def validate(self, attrs):
        has_accounts, has_units = "account_ids" in attrs, "unit_ids" in attrs
        if has_accounts == has_units:
            raise serializers.ValidationError(
                {"account_ids": ["Send either account_ids or unit_ids (one of them, not both)."]}
            )
        return attrs


class AssignmentMoveResultSerializer(serializers.Serializer):
    moved = serializers.IntegerField(help_text="Accounts (or units) whose owner or lock changed.")
    accounts_moved = serializers.IntegerField(
        required=False, help_text="For unit moves: accounts that followed."
    )
    batch = serializers.UUIDField(allow_null=True)
    version = serializers.IntegerField()


# ---------------------------------------------------------------------------------------------
# Diff


class PlanDiffQuerySerializer(serializers.Serializer):
    other = serializers.IntegerField(min_value=1)
    limit = serializers.IntegerField(min_value=0, max_value=DIFF_MAX_LIMIT, default=DIFF_DEFAULT_LIMIT)


class TerritoryRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()


class MovedAccountSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    external_id = serializers.CharField()
    name = serializers.CharField()
    revenue = serializers.FloatField()
    from_ = TerritoryRefSerializer(allow_null=True, help_text="The territory in `other` (the baseline).")
    to = TerritoryRefSerializer(allow_null=True, help_text="The territory in this plan.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class MetricDeltaSerializer(serializers.Serializer):
    plan = serializers.FloatField()
    other = serializers.FloatField()
    delta = serializers.FloatField()


class TerritoryDeltaMetricsSerializer(serializers.Serializer):
    accounts = MetricDeltaSerializer()
    revenue = MetricDeltaSerializer()
    potential = MetricDeltaSerializer()
    workload = MetricDeltaSerializer()


class TerritoryDeltaSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    is_leaf = serializers.BooleanField()
    plan_territory_id = serializers.IntegerField(allow_null=True)
    other_territory_id = serializers.IntegerField(allow_null=True)
    metrics = TerritoryDeltaMetricsSerializer()


class DisruptionSerializer(serializers.Serializer):
    accounts = serializers.FloatField(help_text="Share of accounts that change owner.")
    revenue = serializers.FloatField(help_text="Share of revenue that changes owner.")


class PlanDiffSerializer(serializers.Serializer):
    plan = serializers.IntegerField()
    other = serializers.IntegerField()
    plan_name = serializers.CharField()
    other_name = serializers.CharField()
    accounts_total = serializers.IntegerField()
    moved_total = serializers.IntegerField()
    moved_share = serializers.FloatField()
    disruption = DisruptionSerializer()
    limit = serializers.IntegerField()
    moved_accounts = MovedAccountSerializer(many=True)
    territories = TerritoryDeltaSerializer(many=True)


# ---------------------------------------------------------------------------------------------
# Lead routing, geography units, ownership, the change feed


class LeadSerializer(serializers.Serializer):
    """A lead or account to route: a known `external_id`, or the facts rules and geography read."""

    external_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    name = serializers.CharField(required=False, allow_blank=True, max_length=255)
    postal_code = serializers.CharField(required=False, allow_blank=True, max_length=10)
    latitude = serializers.FloatField(required=False, allow_null=True, min_value=-90, max_value=90)
    longitude = serializers.FloatField(required=False, allow_null=True, min_value=-180, max_value=180)
    industry = serializers.CharField(required=False, allow_blank=True, max_length=100)
    segment = serializers.ChoiceField(choices=Segment.choices, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=AccountStatus.choices, required=False, allow_blank=True)
    revenue = serializers.DecimalField(
        max_digits=16, decimal_places=2, min_value=0, required=False, allow_null=True
    )
    potential = serializers.DecimalField(
        max_digits=16, decimal_places=2, min_value=0, required=False, allow_null=True
    )
    workload_hours = serializers.DecimalField(
        max_digits=9, decimal_places=2, min_value=0, required=False, allow_null=True
    )
    employees = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    lead_source = serializers.CharField(required=False, allow_blank=True, max_length=100)
    city = serializers.CharField(required=False, allow_blank=True, max_length=100)
    state = serializers.CharField(required=False, allow_blank=True, max_length=2)
    country = serializers.CharField(required=False, allow_blank=True, max_length=2)
    parent_external_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    attributes = serializers.DictField(required=False, help_text="Custom CRM fields rules may test.")

    def validate(self, attrs):
        if (attrs.get("latitude") is None) != (attrs.get("longitude") is None):
            missing = "longitude" if attrs.get("longitude") is None else "latitude"
            raise serializers.ValidationError({missing: ["Send latitude and longitude together."]})
        if not any(attrs.get(name) not in (None, "", {}) for name in attrs):
            raise serializers.ValidationError(
                {
                    "external_id": [
                        "Send an external_id, or the lead's details "
                        "(name, postal_code, latitude/longitude, ...)."
                    ]
                }
            )
        return attrs


class RouteSerializer(LeadSerializer):
    at = serializers.DateField(required=False, help_text="Route as of this date (default today).")


class RouteBatchSerializer(serializers.Serializer):
    leads = LeadSerializer(many=True, max_length=ROUTE_BATCH_MAX, allow_empty=False)
    at = serializers.DateField(required=False, help_text="Route as of this date (default today).")


class RuleRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    priority = serializers.IntegerField()


class UnitRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    level = serializers.CharField()


class AccountRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)


class RouteLocationSerializer(serializers.Serializer):
    longitude = serializers.FloatField()
    latitude = serializers.FloatField()
    source = serializers.CharField(help_text="given, postal_code or account")


class OwnerSerializer(serializers.Serializer):
    territory = TerritoryRefSerializer(allow_null=True)
    path = serializers.ListField(child=serializers.CharField())
    path_codes = serializers.ListField(child=serializers.CharField())
    reps = RepRefSerializer(many=True, help_text="Primary reps first.")
    step = serializers.CharField(
        help_text="locked, parent, rule, geography or unassigned; for a stored assignment the resolver "
        "does not reproduce: manual or optimizer; in history: history; no_plan."
    )
    rule = RuleRefSerializer(allow_null=True)
    unit = UnitRefSerializer(allow_null=True)
    locked = serializers.BooleanField()
    explanation = serializers.CharField()


class RouteResultSerializer(OwnerSerializer):
    plan = PlanRefSerializer()
    at = serializers.DateField()
    account = AccountRefSerializer(
        allow_null=True, help_text="The stored account, when external_id is known."
    )
    location = RouteLocationSerializer(allow_null=True)


class RouteBatchResultSerializer(serializers.Serializer):
    plan = PlanRefSerializer()
    at = serializers.DateField()
    results = RouteResultSerializer(many=True)


class OwnershipPlanSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    effective_from = serializers.DateField()
    effective_to = serializers.DateField(allow_null=True)


class OwnershipOnDateSerializer(OwnerSerializer):
    account = AccountRefSerializer()
    at = serializers.DateField()
    plan = OwnershipPlanSerializer(allow_null=True)


class OwnershipPeriodSerializer(OwnerSerializer):
    from_ = serializers.DateField()
    to = serializers.DateField(allow_null=True, help_text="Exclusive; null = until further notice.")
    plan = OwnershipPlanSerializer()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class OwnershipTimelineSerializer(serializers.Serializer):
    account = AccountRefSerializer()
    timeline = OwnershipPeriodSerializer(many=True)


class OwnershipQuerySerializer(serializers.Serializer):
    at = serializers.DateField(required=False)


class FeedSideSerializer(serializers.Serializer):
    territory = TerritoryRefSerializer(allow_null=True)
    path = serializers.ListField(child=serializers.CharField())
    reps = RepRefSerializer(many=True)


class FeedEventSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="This event's position: pass it as `cursor` to read what follows.")
    kind = serializers.ChoiceField(
        choices=["moved", "published", "reps_changed"],
        help_text="moved: an account changed territory in a published plan; published: a plan took over "
        "and the account's territory or primary reps differ from the plan it replaced; reps_changed: "
        "the primary reps of the account's territory changed.",
    )
    recorded_at = serializers.DateTimeField()
    effective_date = serializers.DateField()
    account = AccountRefSerializer()
    old = FeedSideSerializer()
    new = FeedSideSerializer()
    plan = PlanRefSerializer()
    batch = serializers.UUIDField(allow_null=True)


class FeedPageSerializer(serializers.Serializer):
    results = FeedEventSerializer(many=True)
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Send it back as `cursor` for the next page."
    )
    has_more = serializers.BooleanField()


class FeedQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(required=False, allow_blank=True, max_length=500)
    limit = serializers.IntegerField(min_value=1, max_value=FEED_MAX_LIMIT, default=FEED_DEFAULT_LIMIT)


class GeoUnitQuerySerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=UnitLevel.choices, required=False)
    in_bbox = serializers.CharField(required=False, help_text="min_lon,min_lat,max_lon,max_lat")
    plan = serializers.IntegerField(
        min_value=1, required=False, help_text="Add each unit's territory in this plan."
    )
    code = serializers.CharField(required=False, max_length=20)
    limit = serializers.IntegerField(min_value=1, max_value=GEOUNIT_MAX_LIMIT, default=GEOUNIT_DEFAULT_LIMIT)

    def validate_in_bbox(self, value):
        parts = value.split(",")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
            raise serializers.ValidationError("Four numbers: min_lon,min_lat,max_lon,max_lat.")
        min_lon, min_lat, max_lon, max_lat = numbers
        if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
            raise serializers.ValidationError(
                "Longitudes within ±180, latitudes within ±90, minimum before maximum."
            )
        return numbers

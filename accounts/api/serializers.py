"""Account and rep representations, and the shapes of their inputs and bulk results.

Writes do not go through these serializers' validation: every write (one object or ten thousand)
goes through the bulk upsert services, so that a field means and checks the same everywhere and is
geocoded the same way. The input serializers below document those fields for the OpenAPI schema.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.choices import AccountStatus, Segment
from accounts.models import Account, Rep


class WhoAmISerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.CharField()
    rep_external_id = serializers.CharField(allow_null=True)
    token_scopes = serializers.ListField(child=serializers.CharField(), allow_null=True)


class _PointSerializer(serializers.Serializer):
    type = serializers.CharField()
    coordinates = serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2)


def _geojson(point) -> dict | None:
    return None if point is None else {"type": "Point", "coordinates": [point.x, point.y]}


class AccountSerializer(serializers.ModelSerializer):
    longitude = serializers.SerializerMethodField()
    latitude = serializers.SerializerMethodField()
    location = serializers.SerializerMethodField(help_text="GeoJSON Point (lon, lat), or null.")
    parent_external_id = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = [
            "id", "external_id", "name", "street", "city", "state", "postal_code", "country",
            "longitude", "latitude", "location", "geocode_quality", "industry", "segment", "employees",
            "revenue", "potential", "workload_hours", "status", "lead_source", "parent_external_id",
            "attributes", "created", "updated",
        ]  # fmt: skip
        read_only_fields = fields

    def get_longitude(self, obj) -> float | None:
        return None if obj.location is None else obj.location.x

    def get_latitude(self, obj) -> float | None:
        return None if obj.location is None else obj.location.y

    @extend_schema_field(_PointSerializer(allow_null=True))
    def get_location(self, obj):
        return _geojson(obj.location)

    def get_parent_external_id(self, obj) -> str | None:
        # Lists annotate it (one query for the page); a single object read after a write may not.
        if hasattr(obj, "parent_external_id"):
            return obj.parent_external_id
        return obj.parent.external_id if obj.parent_id else None


class RepSerializer(serializers.ModelSerializer):
    home_longitude = serializers.SerializerMethodField()
    home_latitude = serializers.SerializerMethodField()
    home_location = serializers.SerializerMethodField(help_text="GeoJSON Point (lon, lat), or null.")
    manager_external_id = serializers.SerializerMethodField()
    username = serializers.SerializerMethodField(help_text="The rep's login, if they use Tessera.")
    # Plain text: an empty string means no address, which a `format: email` schema would refuse.
    email = serializers.CharField(read_only=True, help_text="Email address, or empty.")

    class Meta:
        model = Rep
        fields = [
            "id", "external_id", "name", "email", "username", "home_longitude", "home_latitude",
            "home_location", "home_postal_code", "capacity_fte", "specialties", "manager_external_id",
            "title", "active", "created", "updated",
        ]  # fmt: skip
        read_only_fields = fields

    def get_home_longitude(self, obj) -> float | None:
        return None if obj.home_location is None else obj.home_location.x

    def get_home_latitude(self, obj) -> float | None:
        return None if obj.home_location is None else obj.home_location.y

    @extend_schema_field(_PointSerializer(allow_null=True))
    def get_home_location(self, obj):
        return _geojson(obj.home_location)

    def get_manager_external_id(self, obj) -> str | None:
        if hasattr(obj, "manager_external_id"):
            return obj.manager_external_id
        return obj.manager.external_id if obj.manager_id else None

    def get_username(self, obj) -> str | None:
        if hasattr(obj, "username"):
            return obj.username
        return obj.user.username if obj.user_id else None


# --- inputs (documentation of what the services accept) ---------------------------------------------


class AccountInputSerializer(serializers.Serializer):
    """One account. On update a field left out keeps its value; an empty value clears it. Location:
    latitude + longitude (or a GeoJSON `location`) are stored as exact; otherwise the US postal code
    is geocoded to its ZIP centroid, otherwise city + state to the city's centre."""

    external_id = serializers.CharField(max_length=64, help_text="The CRM's id; required to create.")
    name = serializers.CharField(max_length=255, required=False)
    street = serializers.CharField(required=False, allow_blank=True)
    city = serializers.CharField(required=False, allow_blank=True)
    state = serializers.CharField(
        required=False, allow_blank=True, help_text="Two-letter code or state name."
    )
    postal_code = serializers.CharField(required=False, allow_blank=True)
    country = serializers.CharField(required=False, help_text="Two-letter code, default US.")
    latitude = serializers.FloatField(required=False, allow_null=True)
    longitude = serializers.FloatField(required=False, allow_null=True)
    location = _PointSerializer(
        required=False, allow_null=True, help_text="Alternative to latitude/longitude."
    )
    industry = serializers.CharField(required=False, allow_blank=True)
    segment = serializers.ChoiceField(choices=Segment.choices, required=False, allow_blank=True)
    employees = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    revenue = serializers.DecimalField(max_digits=16, decimal_places=2, required=False, min_value=0)
    potential = serializers.DecimalField(max_digits=16, decimal_places=2, required=False, min_value=0)
    workload_hours = serializers.DecimalField(max_digits=9, decimal_places=2, required=False, min_value=0)
    status = serializers.ChoiceField(choices=AccountStatus.choices, required=False)
    lead_source = serializers.CharField(required=False, allow_blank=True)
    parent_external_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    attributes = serializers.DictField(
        required=False, help_text="Custom CRM fields; a null value removes one."
    )


class RepInputSerializer(serializers.Serializer):
    """One rep; the same rules as accounts. The login is linked in the admin, never here."""

    external_id = serializers.CharField(max_length=64, help_text="The CRM's id; required to create.")
    name = serializers.CharField(max_length=255, required=False)
    email = serializers.EmailField(required=False, allow_blank=True)
    home_latitude = serializers.FloatField(required=False, allow_null=True)
    home_longitude = serializers.FloatField(required=False, allow_null=True)
    home_location = _PointSerializer(required=False, allow_null=True)
    home_postal_code = serializers.CharField(required=False, allow_blank=True)
    capacity_fte = serializers.DecimalField(max_digits=4, decimal_places=2, required=False)
    specialties = serializers.ListField(child=serializers.CharField(), required=False)
    manager_external_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    title = serializers.CharField(required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)


class BulkRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(
        help_text="1-based position in a JSON list; the file's row for CSV (header = 1)."
    )
    external_id = serializers.CharField()
    # Plain text rather than an enum: a second "status" enum would collide in the schema's names.
    status = serializers.CharField(help_text="created, updated, unchanged or error.")
    id = serializers.IntegerField(allow_null=True)
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    warnings = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class BulkTotalsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    error = serializers.IntegerField()


class BulkResultSerializer(serializers.Serializer):
    committed = serializers.BooleanField(
        help_text="False when nothing was written (atomic with errors, or dry_run)."
    )
    totals = BulkTotalsSerializer()
    rows = BulkRowSerializer(many=True)
    notes = serializers.ListField(child=serializers.CharField(), help_text="How a CSV body was read.")


class BulkErrorSerializer(serializers.Serializer):
    """A refused bulk request. With atomic=true and failing rows it also carries the per-row result
    (nothing committed); a body that cannot be read at all (no rows, too many) has only message and
    errors."""

    message = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    committed = serializers.BooleanField(required=False)
    totals = BulkTotalsSerializer(required=False)
    rows = BulkRowSerializer(many=True, required=False)
    notes = serializers.ListField(child=serializers.CharField(), required=False)


class AccountBulkRequestSerializer(serializers.Serializer):
    rows = AccountInputSerializer(many=True)


class RepBulkRequestSerializer(serializers.Serializer):
    rows = RepInputSerializer(many=True)

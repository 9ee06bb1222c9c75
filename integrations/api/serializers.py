from django.core.validators import URLValidator
from rest_framework import serializers

from integrations.choices import ImportKind, WebhookEvent
from integrations.geo import EXPORT_FORMATS
from integrations.models import ImportJob, WebhookDelivery, WebhookSubscription
from territories.choices import UnitLevel


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    """A subscription as listed: the secret is never shown again after creation."""

    url = serializers.CharField(
        max_length=500, validators=[URLValidator(schemes=["http", "https"])], help_text="http(s) URL."
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices), allow_empty=False, max_length=10
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        min_length=16,
        max_length=128,
        help_text="The signing secret; leave it out to have one generated (returned once).",
    )
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = WebhookSubscription
        fields = ["id", "name", "url", "events", "active", "secret", "owner", "created", "updated"]
        read_only_fields = ["id", "owner", "created", "updated"]


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    """The answer to a create: the only time the secret is shown."""

    secret = serializers.CharField(read_only=True, help_text="Verify X-Tessera-Signature with it.")


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "status",
            "attempts",
            "response_code",
            "error",
            "next_attempt_at",
            "delivered_at",
            "attempt_log",
            "payload",
            "created",
            "updated",
        ]
        read_only_fields = fields


class ImportJobSerializer(serializers.ModelSerializer):
    plan = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "kind",
            "plan",
            "file_name",
            "file_size",
            "options",
            "status",
            "progress",
            "message",
            "error",
            "report",
            "created_by",
            "created",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    """An accounts or reps file (CSV or XLSX) and how to import it."""

    kind = serializers.ChoiceField(choices=[ImportKind.ACCOUNTS, ImportKind.REPS])
    file = serializers.FileField(allow_empty_file=False)
    dry_run = serializers.BooleanField(default=False, help_text="Check everything, write nothing.")
    partial = serializers.BooleanField(
        default=False,
        help_text="Write the good rows even if some rows have errors (default: all or nothing).",
    )
    mapping = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=5000,
        help_text="Which column fills which field: 'Acct #=external_id,Notes=-'.",
    )
    sheet = serializers.CharField(required=False, allow_blank=True, max_length=100)
    delimiter = serializers.CharField(required=False, allow_blank=True, max_length=2)


class PlanImportSerializer(serializers.Serializer):
    """Territory polygons (GeoJSON, zipped Shapefile, GeoPackage) or a unit→territory CSV."""

    file = serializers.FileField(allow_empty_file=False)
    version = serializers.IntegerField(required=False, min_value=1, help_text="The plan version you read.")
    unit_level = serializers.ChoiceField(
        choices=UnitLevel.choices,
        required=False,
        help_text="Which units polygons take (default: the file's unit_level, else county).",
    )
    materialize = serializers.BooleanField(
        default=True, help_text="Rebuild account assignments from the new geography afterwards."
    )


EXPORT_FORMAT_CHOICES = list(EXPORT_FORMATS)

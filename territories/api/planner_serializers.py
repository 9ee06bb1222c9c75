"""Request and response shapes of the planner's own API (territories/api/planner_views.py)."""

from __future__ import annotations

from rest_framework import serializers


class VersionSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, required=False)


class LockSerializer(VersionSerializer):
    account_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=100_000
    )
    locked = serializers.BooleanField()


class SelectionPolygonSerializer(serializers.Serializer):
    polygon = serializers.JSONField(help_text="A GeoJSON Polygon or MultiPolygon in longitude/latitude.")

    def validate_polygon(self, value):
        if not isinstance(value, dict) or "type" not in value or "coordinates" not in value:
            raise serializers.ValidationError("Expected a GeoJSON geometry object with type and coordinates.")
        return value


class _Ref(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()


class WhySerializer(serializers.Serializer):
    account = serializers.DictField()
    plan = serializers.DictField()
    step = serializers.ChoiceField(choices=["locked", "parent", "rule", "geography", "unassigned"])
    explanation = serializers.CharField()
    territory = _Ref(allow_null=True)
    path = serializers.ListField(child=serializers.CharField())
    rule = serializers.DictField(allow_null=True)
    unit = serializers.DictField(allow_null=True)
    locked = serializers.BooleanField()
    parent = serializers.DictField(allow_null=True)
    stored = serializers.DictField()
    agrees = serializers.BooleanField(help_text="Whether the stored owner is the resolver's answer.")
    note = serializers.CharField(allow_blank=True)


class HistoryEntrySerializer(serializers.Serializer):
    batch = serializers.UUIDField()
    label = serializers.CharField()
    at = serializers.DateTimeField()


class HistorySerializer(serializers.Serializer):
    plan = serializers.IntegerField()
    version = serializers.IntegerField()
    undo = HistoryEntrySerializer(many=True)
    redo = HistoryEntrySerializer(many=True)


class UndoRedoSerializer(serializers.Serializer):
    undone = serializers.UUIDField(required=False)
    redone = serializers.UUIDField(required=False)
    changed = serializers.IntegerField(required=False)
    batch = serializers.UUIDField(required=False, allow_null=True)
    version = serializers.IntegerField()


class SelectionSerializer(serializers.Serializer):
    account_ids = serializers.ListField(child=serializers.IntegerField())
    unit_ids = serializers.ListField(child=serializers.IntegerField())
    truncated = serializers.BooleanField()
    totals = serializers.DictField(child=serializers.FloatField())
    by_territory = serializers.ListField(child=serializers.DictField())


class PlanMapSerializer(serializers.Serializer):
    plan = serializers.DictField()
    territories = serializers.ListField(child=serializers.DictField())
    units = serializers.ListField(
        child=serializers.ListField(), help_text="[unit_id, territory_id, locked] per assigned unit."
    )
    labels = serializers.ListField(child=serializers.DictField())

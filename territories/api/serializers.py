from rest_framework import serializers

from territories.balancing import LEVELS, METRICS, MODES
from territories.models import BalanceJob


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

"""Shapes of the quotas API. Reads are plain ModelSerializers over selector querysets; writes are
input serializers whose validated data goes to a service."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from quotas.choices import AllocationMethod, Component, GoalMetric, QuotaPlanStatus
from quotas.models import (
    ActivityGoal,
    Booking,
    FiscalPeriod,
    Quota,
    QuotaAdjustment,
    QuotaChange,
    QuotaPlan,
    QuotaRelief,
)


class FiscalPeriodRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = FiscalPeriod
        fields = ["id", "name", "kind", "start", "end"]


class QuotaTerritoryRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()


class QuotaNamedRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class QuotaUserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class TargetsSerializer(serializers.Serializer):
    new = serializers.DecimalField(max_digits=16, decimal_places=2, min_value=0, required=False)
    renewal = serializers.DecimalField(max_digits=16, decimal_places=2, min_value=0, required=False)
    upsell = serializers.DecimalField(max_digits=16, decimal_places=2, min_value=0, required=False)


# Statuses are plain text rather than enums: another "status" enum would collide in the schema's names.
class QuotaPlanSerializer(serializers.ModelSerializer):
    status = serializers.CharField(help_text="draft, approved, active or archived.")
    territory_plan = QuotaNamedRefSerializer()
    fiscal_year = FiscalPeriodRefSerializer()
    targets = serializers.SerializerMethodField()
    allocated_by = QuotaUserRefSerializer(allow_null=True)

    class Meta:
        model = QuotaPlan
        fields = [
            "id", "name", "territory_plan", "fiscal_year", "status", "targets", "allocation",
            "allocated_at", "allocated_by", "allocation_job", "created", "updated",
        ]  # fmt: skip

    def get_targets(self, obj) -> dict[str, str]:
        from quotas.services import company_targets

        return {c: str(v) for c, v in company_targets(obj).items()}


class QuotaPlanCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    territory_plan = serializers.IntegerField()
    fiscal_year = serializers.IntegerField()
    targets = TargetsSerializer()


class QuotaPlanTransitionSerializer(serializers.Serializer):
    status = serializers.CharField(help_text=f"One of {', '.join(QuotaPlanStatus.values)}.")


class AllocateSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=AllocationMethod.choices, default=AllocationMethod.POTENTIAL)
    blend_weight = serializers.FloatField(
        min_value=0, max_value=1, default=0.5, help_text="Share of potential."
    )
    unit = serializers.DecimalField(
        max_digits=16,
        decimal_places=2,
        min_value=Decimal("0.01"),
        default=Decimal("1000"),
        help_text="Round amounts to this.",
    )
    min_ratio = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=1, help_text="× the sibling average."
    )
    max_ratio = serializers.FloatField(
        required=False, allow_null=True, min_value=1, help_text="× the sibling average."
    )
    targets = TargetsSerializer(required=False, help_text="Set new company targets first.")
    background = serializers.BooleanField(
        default=False, help_text="Run in a worker even for a small plan (large plans always do)."
    )


class AllocationResultSerializer(serializers.Serializer):
    parameters = serializers.DictField()
    territories = serializers.IntegerField()
    reps = serializers.IntegerField()
    quotas = serializers.IntegerField()
    targets = serializers.DictField(child=serializers.CharField())
    seconds = serializers.FloatField()


class QuotaSerializer(serializers.ModelSerializer):
    period = FiscalPeriodRefSerializer()
    territory = QuotaTerritoryRefSerializer(allow_null=True)
    rep = QuotaNamedRefSerializer(allow_null=True)

    class Meta:
        model = Quota
        fields = ["id", "period", "territory", "rep", "component", "amount"]


class AdjustmentSerializer(serializers.ModelSerializer):
    status = serializers.CharField(help_text="pending, approved or rejected.")
    period = FiscalPeriodRefSerializer()
    parent_territory = QuotaTerritoryRefSerializer(allow_null=True)
    from_territory = QuotaTerritoryRefSerializer(allow_null=True)
    to_territory = QuotaTerritoryRefSerializer(allow_null=True)
    from_rep = QuotaNamedRefSerializer(allow_null=True)
    to_rep = QuotaNamedRefSerializer(allow_null=True)
    approver_territory = QuotaTerritoryRefSerializer(allow_null=True)
    proposed_by = QuotaUserRefSerializer(allow_null=True)
    approver = QuotaUserRefSerializer(allow_null=True)
    decided_by = QuotaUserRefSerializer(allow_null=True)

    class Meta:
        model = QuotaAdjustment
        fields = [
            "id", "quota_plan", "component", "period", "parent_territory", "from_territory", "to_territory",
            "from_rep", "to_rep", "amount", "reason", "status", "proposed_by", "approver_territory",
            "approver", "decided_by", "decided_at", "decision_note", "created",
        ]  # fmt: skip


class AdjustmentCreateSerializer(serializers.Serializer):
    quota_plan = serializers.IntegerField()
    component = serializers.ChoiceField(choices=Component.choices)
    period = serializers.IntegerField(help_text="A month, quarter or the fiscal year of the quota plan.")
    amount = serializers.DecimalField(max_digits=16, decimal_places=2, min_value=Decimal("0.01"))
    reason = serializers.CharField()
    from_territory = serializers.IntegerField(required=False, allow_null=True)
    to_territory = serializers.IntegerField(required=False, allow_null=True)
    territory = serializers.IntegerField(required=False, allow_null=True, help_text="With from_rep/to_rep.")
    from_rep = serializers.IntegerField(required=False, allow_null=True)
    to_rep = serializers.IntegerField(required=False, allow_null=True)


class DecisionSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="")


class QuotaChangeSerializer(serializers.ModelSerializer):
    actor = QuotaUserRefSerializer(allow_null=True)
    period = FiscalPeriodRefSerializer()

    class Meta:
        model = QuotaChange
        fields = [
            "id", "at", "actor", "kind", "period", "territory", "territory_code", "rep", "rep_name",
            "component", "old_amount", "new_amount", "adjustment", "relief", "reason",
        ]  # fmt: skip


class ReliefLineSerializer(serializers.ModelSerializer):
    status = serializers.CharField(help_text="applied, or skipped (the reason says why).")

    class Meta:
        model = QuotaRelief
        fields = [
            "id", "event", "batch", "account", "account_external_id", "account_name", "potential",
            "from_territory", "from_code", "to_territory", "to_code", "effective_from", "amounts", "total",
            "status", "reason", "created",
        ]  # fmt: skip


class ReliefReportSerializer(serializers.Serializer):
    quota_plan = serializers.IntegerField()
    applied = serializers.IntegerField()
    skipped = serializers.IntegerField()
    moved = serializers.DictField(child=serializers.CharField(), help_text="Quota moved per component.")
    company_total_unchanged = serializers.BooleanField()
    lines = ReliefLineSerializer(many=True)


class ActivityGoalSerializer(serializers.ModelSerializer):
    territory = QuotaTerritoryRefSerializer()

    class Meta:
        model = ActivityGoal
        fields = ["id", "quota_plan", "territory", "metric", "target", "updated"]


class ActivityGoalSetSerializer(serializers.Serializer):
    territory = serializers.IntegerField()
    metric = serializers.ChoiceField(choices=GoalMetric.choices)
    target = serializers.DecimalField(max_digits=10, decimal_places=3, min_value=0)


class BookingSerializer(serializers.ModelSerializer):
    account_external_id = serializers.CharField(source="account.external_id")
    rep_external_id = serializers.CharField(source="rep.external_id", allow_null=True, default=None)

    class Meta:
        model = Booking
        fields = ["id", "external_id", "account", "account_external_id", "amount", "booked_on", "component",
                  "rep", "rep_external_id", "created", "updated"]  # fmt: skip


class BookingInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=64)
    account_external_id = serializers.CharField(required=False)
    amount = serializers.DecimalField(max_digits=16, decimal_places=2, min_value=0, required=False)
    booked_on = serializers.DateField(required=False)
    component = serializers.ChoiceField(choices=Component.choices, required=False)
    rep_external_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class BookingBulkRequestSerializer(serializers.Serializer):
    rows = BookingInputSerializer(many=True)

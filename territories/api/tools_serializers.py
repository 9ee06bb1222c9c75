"""Serializers of the planner's editing tools: territories, their reps, and assignment rules.

Input serializers check types only; the services check the domain (codes unique in the plan, leaves,
versions) and name the field in their errors."""

from __future__ import annotations

from rest_framework import serializers

from territories import rules as rule_conditions
from territories.choices import MemberRole
from territories.models import AssignmentRule, Territory


class VersionedSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False, min_value=0, help_text="The plan version the edit is based on (or If-Match)."
    )


class ToolsTerritoryRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()


class TerritoryMemberSerializer(serializers.Serializer):
    rep = serializers.IntegerField()
    name = serializers.CharField(read_only=True)
    external_id = serializers.CharField(read_only=True)
    role = serializers.ChoiceField(choices=MemberRole.choices, default=MemberRole.PRIMARY)
    share = serializers.DecimalField(max_digits=4, decimal_places=3, default=1, coerce_to_string=False)
    capacity_fte = serializers.DecimalField(
        max_digits=4, decimal_places=2, read_only=True, coerce_to_string=False
    )


class EditableTerritorySerializer(serializers.ModelSerializer):
    """A territory as the planner's tools show it; `version` is the plan's version after the edit."""

    parent_id = serializers.IntegerField(allow_null=True, read_only=True)
    is_leaf = serializers.SerializerMethodField()
    manager = serializers.SerializerMethodField()
    reps = serializers.SerializerMethodField()
    version = serializers.IntegerField(source="plan.version", read_only=True)

    class Meta:
        model = Territory
        fields = [
            "id",
            "plan",
            "code",
            "name",
            "parent_id",
            "level_name",
            "color",
            "is_leaf",
            "manager",
            "reps",
            "version",
        ]
        read_only_fields = fields

    def get_is_leaf(self, territory) -> bool:
        children = getattr(territory, "child_count", None)
        return (not territory.children.exists()) if children is None else children == 0

    def get_manager(self, territory) -> dict | None:
        if territory.manager_id is None:
            return None
        return {"id": territory.manager_id, "username": territory.manager.username}

    def get_reps(self, territory) -> list[dict]:
        return [
            {
                "rep": m.rep_id,
                "name": m.rep.name,
                "external_id": m.rep.external_id,
                "role": m.role,
                "share": float(m.share),
                "capacity_fte": float(m.rep.capacity_fte),
            }
            for m in territory.memberships.all()
        ]


class TerritoryCreateSerializer(VersionedSerializer):
    plan = serializers.IntegerField()
    # Blank passes here so the service can report it together with every other bad field.
    name = serializers.CharField(max_length=200, allow_blank=True)
    code = serializers.CharField(max_length=50, allow_blank=True)
    parent = serializers.IntegerField(required=False, allow_null=True)
    color = serializers.CharField(required=False, allow_blank=True, max_length=7)
    level_name = serializers.CharField(required=False, allow_blank=True, max_length=50)


class TerritoryUpdateSerializer(VersionedSerializer):
    name = serializers.CharField(required=False, max_length=200)
    code = serializers.CharField(required=False, max_length=50)
    parent = serializers.IntegerField(required=False, allow_null=True)
    color = serializers.CharField(required=False, max_length=7)
    level_name = serializers.CharField(required=False, allow_blank=True, max_length=50)


class TerritoryMergeSerializer(VersionedSerializer):
    into = serializers.IntegerField(help_text="The territory that takes everything over.")


class TerritorySplitSerializer(VersionedSerializer):
    # Blank passes here so the service can report it together with every other bad field.
    name = serializers.CharField(max_length=200, allow_blank=True)
    code = serializers.CharField(max_length=50, allow_blank=True)
    color = serializers.CharField(required=False, allow_blank=True, max_length=7)
    account_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    unit_ids = serializers.ListField(child=serializers.IntegerField(), required=False)


class MembersSetSerializer(VersionedSerializer):
    members = serializers.ListField(child=serializers.DictField(), allow_empty=True)


class MembersSerializer(serializers.Serializer):
    territory = serializers.IntegerField()
    members = TerritoryMemberSerializer(many=True)
    version = serializers.IntegerField()


class EditResultSerializer(serializers.Serializer):
    """What a merge, split or delete did, and the plan's new version."""

    version = serializers.IntegerField()
    batch = serializers.CharField(required=False)
    territory = EditableTerritorySerializer(required=False)
    moved_accounts = serializers.IntegerField(required=False)
    moved_units = serializers.IntegerField(required=False)
    moved_rules = serializers.IntegerField(required=False)
    moved_children = serializers.IntegerField(required=False)


class RepCandidateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    name = serializers.CharField()
    capacity_fte = serializers.DecimalField(max_digits=4, decimal_places=2, coerce_to_string=False)
    active = serializers.BooleanField()


class AssignmentRuleSerializer(serializers.ModelSerializer):
    """An assignment rule; `description` reads the conditions out in words."""

    territory = ToolsTerritoryRefSerializer(read_only=True)
    description = serializers.SerializerMethodField()
    postal_codes_count = serializers.SerializerMethodField()

    class Meta:
        model = AssignmentRule
        fields = [
            "id",
            "plan",
            "territory",
            "name",
            "priority",
            "active",
            "conditions",
            "description",
            "postal_codes_count",
        ]
        read_only_fields = fields

    def get_description(self, rule) -> str:
        try:
            parsed = rule_conditions.parse_conditions(rule.conditions)
        except rule_conditions.RuleConditionError as exc:
            return f"invalid: {exc}"
        return " and ".join(c.describe() for c in parsed) or "every account (catch-all)"

    def get_postal_codes_count(self, rule) -> int:
        count = getattr(rule, "postal_code_count", None)
        return rule.postal_codes.count() if count is None else count


class AssignmentRuleDetailSerializer(AssignmentRuleSerializer):
    postal_codes = serializers.SerializerMethodField()

    class Meta(AssignmentRuleSerializer.Meta):
        fields = [*AssignmentRuleSerializer.Meta.fields, "postal_codes"]
        read_only_fields = fields

    def get_postal_codes(self, rule) -> list[str]:
        return list(rule.postal_codes.values_list("postal_code", flat=True))


class RuleInputSerializer(VersionedSerializer):
    territory = serializers.IntegerField(required=False, help_text="The leaf territory matches go to.")
    name = serializers.CharField(required=False, max_length=200, allow_blank=True)
    priority = serializers.IntegerField(required=False, help_text="Lower numbers are tried first.")
    active = serializers.BooleanField(required=False)
    conditions = serializers.JSONField(
        required=False, help_text='[{"field": "industry", "op": "in", "value": ["Healthcare"]}, ...]'
    )
    postal_codes = serializers.JSONField(
        required=False, help_text="A list of postal codes, or text with codes separated by spaces or commas."
    )


class RulePreviewInputSerializer(RuleInputSerializer):
    rule = serializers.IntegerField(required=False, help_text="The rule being edited (absent: a new rule).")
    delete = serializers.BooleanField(default=False, help_text="Preview deleting `rule`.")


class RuleSavedSerializer(serializers.Serializer):
    rule = AssignmentRuleDetailSerializer(allow_null=True)
    moved = serializers.IntegerField()
    batch = serializers.CharField()
    version = serializers.IntegerField()


class PreviewTerritorySerializer(serializers.Serializer):
    territory = ToolsTerritoryRefSerializer(allow_null=True)
    gain = serializers.IntegerField()
    loss = serializers.IntegerField()
    net = serializers.IntegerField()


class PreviewSampleSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    to = ToolsTerritoryRefSerializer(allow_null=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = ToolsTerritoryRefSerializer(allow_null=True)
        return fields


class RulePreviewSerializer(serializers.Serializer):
    would_move = serializers.IntegerField()
    by_territory = PreviewTerritorySerializer(many=True)
    sample = PreviewSampleSerializer(many=True)
    account_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="The accounts that would move (at most 10,000)."
    )
    matched = serializers.IntegerField(help_text="Accounts the rule's conditions match.")
    decided_by_rule = serializers.IntegerField(help_text="Accounts the rule would decide after saving.")
    version = serializers.IntegerField()

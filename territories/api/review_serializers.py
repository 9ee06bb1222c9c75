from rest_framework import serializers

from territories.models import PlanComment


class CommentAuthorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.CharField()


class CommentTerritorySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()


class PlanCommentSerializer(serializers.ModelSerializer):
    """A review comment as the API returns it."""

    author = CommentAuthorSerializer(allow_null=True, read_only=True)
    territory = CommentTerritorySerializer(allow_null=True, read_only=True)

    class Meta:
        model = PlanComment
        fields = ["id", "author", "body", "territory", "plan_status", "created"]
        read_only_fields = fields


class PlanCommentCreateSerializer(serializers.Serializer):
    body = serializers.CharField(allow_blank=True, trim_whitespace=False)
    territory = serializers.IntegerField(required=False, allow_null=True)

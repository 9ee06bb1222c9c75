from rest_framework import serializers


class WhoAmISerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.CharField()
    rep_external_id = serializers.CharField(allow_null=True)
    token_scopes = serializers.ListField(child=serializers.CharField(), allow_null=True)

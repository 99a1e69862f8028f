from rest_framework import serializers

from apikeys.models import ApiKey


def model_name_field() -> serializers.RegexField:
    return serializers.RegexField(r"^[a-z0-9][a-z0-9._-]{0,99}$", max_length=100)


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as lists and details show it: never the secret."""

    masked = serializers.CharField(read_only=True)
    created_by = serializers.UUIDField(source="created_by_id", read_only=True, allow_null=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "status",
            "prefix",
            "last_four",
            "masked",
            "allowed_models",
            "expires_at",
            "last_used_at",
            "created_at",
            "created_by",
            "revoked_at",
        ]
        read_only_fields = fields


class IssuedKeySerializer(ApiKeySerializer):
    """The answer to create and rotate: the only time `key` appears."""

    key = serializers.CharField(read_only=True, help_text="The API key. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = ["key", *ApiKeySerializer.Meta.fields]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, trim_whitespace=True)
    allowed_models = serializers.ListField(
        child=model_name_field(), required=False, allow_empty=True, max_length=50
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ApiKeyUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, trim_whitespace=True, required=False)
    allowed_models = serializers.ListField(
        child=model_name_field(), required=False, allow_null=True, allow_empty=True, max_length=50
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Send at least one of name, allowed_models.")
        return attrs

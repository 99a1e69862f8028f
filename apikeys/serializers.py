from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apikeys import controls
from apikeys.budgets import MAX_AMOUNT
from apikeys.models import ApiKey, BudgetPeriod
from apikeys.networks import MAX_NETWORKS


def model_name_field() -> serializers.RegexField:
    return serializers.RegexField(r"^[a-z0-9][a-z0-9._-]{0,99}$", max_length=100)


class _Strict(serializers.Serializer):
    """Refuses fields it does not know (a misspelt control must not be accepted and ignored)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class KeyLimitsSerializer(_Strict):
    """The key's own limits; null: the organization's. Each at most the organization's."""

    requests_per_minute = serializers.IntegerField(
        min_value=1, allow_null=True, required=False, default=None
    )
    tokens_per_minute = serializers.IntegerField(
        min_value=1, allow_null=True, required=False, default=None
    )
    concurrent_requests = serializers.IntegerField(
        min_value=1, allow_null=True, required=False, default=None
    )


class KeyBudgetSerializer(_Strict):
    amount = serializers.IntegerField(
        min_value=1, max_value=MAX_AMOUNT, help_text="The spend cap per period, in micro-USD."
    )
    period = serializers.ChoiceField(
        choices=BudgetPeriod.choices,
        default=BudgetPeriod.BILLING_PERIOD,
        help_text="billing_period (the organization's allowance period), day or month (UTC).",
    )


class KeySpendSerializer(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Micro-USD billed this budget period.")
    budget = serializers.IntegerField()
    remaining = serializers.IntegerField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()


def _allowed_ips_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=64),
        allow_null=True,
        allow_empty=True,
        max_length=MAX_NETWORKS,
        help_text="Networks in CIDR notation (IPv4 or IPv6) the key may be used from; "
        "null or empty: anywhere.",
        **kwargs,
    )


class _Controls(_Strict):
    """`limits`, `budget` and `allowed_ips`, as create and update accept them."""

    limits = KeyLimitsSerializer(required=False, allow_null=True)
    budget = KeyBudgetSerializer(required=False, allow_null=True)
    allowed_ips = _allowed_ips_field(required=False)


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as lists and details show it: never the secret."""

    masked = serializers.CharField(read_only=True)
    created_by = serializers.UUIDField(source="created_by_id", read_only=True, allow_null=True)
    limits = serializers.SerializerMethodField()
    budget = serializers.SerializerMethodField()

    @extend_schema_field(KeyLimitsSerializer)
    def get_limits(self, key: ApiKey) -> dict:
        return controls.limits_of(key)

    @extend_schema_field(KeyBudgetSerializer(allow_null=True))
    def get_budget(self, key: ApiKey) -> dict | None:
        return controls.budget_of(key)

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
            "limits",
            "budget",
            "allowed_ips",
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


class ApiKeyDetailSerializer(ApiKeySerializer):
    """One key: with its spend in the current budget period (null without a budget)."""

    spend = serializers.SerializerMethodField()

    @extend_schema_field(KeySpendSerializer(allow_null=True))
    def get_spend(self, key: ApiKey) -> dict | None:
        return controls.spend_of(key, now=self.context["now"])

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "spend"]
        read_only_fields = fields


class ApiKeyCreateSerializer(_Controls):
    name = serializers.CharField(max_length=100, trim_whitespace=True)
    allowed_models = serializers.ListField(
        child=model_name_field(), required=False, allow_empty=True, max_length=50
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ApiKeyUpdateSerializer(_Controls):
    name = serializers.CharField(max_length=100, trim_whitespace=True, required=False)
    allowed_models = serializers.ListField(
        child=model_name_field(), required=False, allow_null=True, allow_empty=True, max_length=50
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                "Send at least one of name, allowed_models, limits, budget, allowed_ips."
            )
        return attrs

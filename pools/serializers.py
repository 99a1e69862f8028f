from rest_framework import serializers

from pools.models import Model


class ModelPricingSerializer(serializers.Serializer):
    input_per_mtok_micro_usd = serializers.IntegerField(source="input_price_per_mtok")
    output_per_mtok_micro_usd = serializers.IntegerField(source="output_price_per_mtok")


class CatalogModelSerializer(serializers.ModelSerializer):
    """A model of the catalog; `entitled`: enabled, and allowed by the org's plan."""

    # context["allows"]: the caller's plan, a predicate on canonical model names.
    id = serializers.CharField(source="name", read_only=True)
    aliases = serializers.SlugRelatedField(many=True, read_only=True, slug_field="alias")
    pricing = ModelPricingSerializer(source="*", read_only=True)
    entitled = serializers.SerializerMethodField()

    class Meta:
        model = Model
        fields = [
            "id",
            "display_name",
            "aliases",
            "status",
            "context_window",
            "max_output_tokens",
            "pricing",
            "entitled",
        ]
        read_only_fields = fields

    def get_entitled(self, model: Model) -> bool:
        return self.context["allows"](model.name) and model.status == Model.Status.ENABLED


class CatalogSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = CatalogModelSerializer(many=True)

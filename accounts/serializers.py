from rest_framework import serializers

from accounts.models import Organization, OrganizationMember, Plan, User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "display_name", "auth_provider", "status", "created_at"]
        read_only_fields = fields


class UserUpdateSerializer(serializers.Serializer):
    display_name = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=True)


class OrganizationSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    personal = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "status", "personal", "role", "created_at"]
        read_only_fields = fields

    def get_role(self, org: Organization) -> str:
        return self.context["roles"][org.pk]

    def get_personal(self, org: Organization) -> bool:
        return org.personal_for_id is not None


class MembershipOrgSerializer(serializers.Serializer):
    """An org as its member sees it: the org plus the member's role."""

    def to_representation(self, membership: OrganizationMember) -> dict:
        org = membership.org
        return OrganizationSerializer(org, context={"roles": {org.pk: membership.role}}).data


class PlanSerializer(serializers.ModelSerializer):
    models = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = [
            "code",
            "name",
            "requests_per_minute",
            "tokens_per_minute",
            "concurrent_requests",
            "window_requests",
            "window_seconds",
            "weekly_requests",
            "weekly_tokens",
            "max_active_keys",
            "all_models",
            "models",
        ]
        read_only_fields = fields

    def get_models(self, plan: Plan) -> list[str] | None:
        if plan.all_models:
            return None
        return sorted(p.model_name for p in plan.model_policies.all())

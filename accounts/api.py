"""Dashboard endpoints for the caller and their organizations."""

from collections.abc import Callable

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.entitlement import plan_model_names
from accounts.serializers import (
    MembershipOrgSerializer,
    OrganizationSerializer,
    UserSerializer,
    UserUpdateSerializer,
)
from infra.pagination import Pagination, paginate


class MeView(APIView):
    @extend_schema(responses=UserSerializer, operation_id="me_retrieve")
    def get(self, request):
        return Response(UserSerializer(request.user).data)

    @extend_schema(request=UserUpdateSerializer, responses=UserSerializer, operation_id="me_update")
    def patch(self, request):
        data = UserUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_update_profile(
            user=request.user, display_name=data.validated_data["display_name"], now=timezone.now()
        )
        return Response(UserSerializer(user).data)


class OrgListView(APIView):
    pagination_class = Pagination  # documents GET as the paginated page `paginate` returns

    # MembershipOrgSerializer declares no fields; the body is an OrganizationSerializer.
    @extend_schema(responses=OrganizationSerializer(many=True), operation_id="orgs_list")
    def get(self, request):
        return paginate(
            request=request,
            view=self,
            queryset=selectors.user_memberships(user=request.user),
            serialize=lambda rows: MembershipOrgSerializer(rows, many=True).data,
        )


class OrgDetailView(APIView):
    @extend_schema(responses=OrganizationSerializer, operation_id="orgs_retrieve")
    def get(self, request, org_id):
        membership = selectors.get_membership_or_404(user=request.user, org_id=org_id)
        return Response(MembershipOrgSerializer(membership).data)


def caller_model_entitlement(request) -> Callable[[str], bool]:
    """Which canonical model names the plan of the org asked for (`?org_id=`, else the
    caller's personal org) allows; 404 for an org the caller is not a member of. The
    dashboard catalog (pools.api.CatalogView) flags each model with it."""
    org_id = request.query_params.get("org_id")
    if org_id:
        membership = selectors.get_membership_or_404(user=request.user, org_id=org_id)
    else:
        membership = selectors.personal_membership(user=request.user)
    plan = selectors.active_subscription(org=membership.org).plan
    allowed = plan_model_names(plan=plan)
    return lambda model_name: services.plan_allows_model(
        plan=plan, model_name=model_name, allowed_names=allowed
    )

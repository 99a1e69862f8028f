"""Dashboard endpoints for plans and usage."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import active_subscription, get_membership_or_404
from accounts.serializers import PlanSerializer
from metering.allowance import org_allowance


class OrgPlanView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, operation_id="orgs_plan_retrieve")
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        plan = active_subscription(org=membership.org).plan
        return Response(
            {"plan": PlanSerializer(plan).data, **org_allowance(org=membership.org, now=timezone.now())}
        )

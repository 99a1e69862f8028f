"""`GET /api/v1/models`: the catalog with the caller's entitlement per model."""

from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import active_subscription, personal_membership, get_membership_or_404
from accounts.services import plan_allows_model, plan_model_names
from pools.models import Model
from pools.selectors import catalog_models


class CatalogView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, operation_id="models_list")
    def get(self, request):
        org_id = request.query_params.get("org_id")
        if org_id:
            membership = get_membership_or_404(user=request.user, org_id=org_id)
        else:
            membership = personal_membership(user=request.user)
        plan = active_subscription(org=membership.org).plan
        allowed = plan_model_names(plan=plan)
        data = [
            {
                "id": model.name,
                "display_name": model.display_name,
                "aliases": [a.alias for a in model.aliases.all()],
                "status": model.status,
                "context_window": model.context_window,
                "max_output_tokens": model.max_output_tokens,
                "pricing": {
                    "input_per_mtok_micro_usd": model.input_price_per_mtok,
                    "output_per_mtok_micro_usd": model.output_price_per_mtok,
                },
                "entitled": plan_allows_model(plan=plan, model_name=model.name, allowed_names=allowed)
                and model.status == Model.Status.ENABLED,
            }
            for model in catalog_models()
        ]
        return Response({"object": "list", "data": data})

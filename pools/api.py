"""`GET /api/v1/models`: the catalog, each model flagged with the caller's entitlement."""

from __future__ import annotations

from collections.abc import Callable

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pools.selectors import catalog_models
from pools.serializers import CatalogSerializer

# The caller's entitlement: the request -> a predicate on canonical model names.
Entitlement = Callable[[Request], Callable[[str], bool]]


class CatalogView(APIView):
    # Which models a plan allows is accounts' rule, and pools imports no other app
    # (DESIGN), so the root URLconf hands the view accounts' answer (pools.urls).
    entitlement: Entitlement | None = None

    @extend_schema(responses=CatalogSerializer, operation_id="models_list")
    def get(self, request):
        allows = self.entitlement(request)
        return Response(
            CatalogSerializer(
                {"object": "list", "data": catalog_models()}, context={"allows": allows}
            ).data
        )

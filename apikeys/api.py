"""Dashboard endpoints for an org's API keys. Members read; owners and admins manage."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization, OrganizationMember
from accounts.selectors import get_membership_or_404, personal_membership
from apikeys import selectors, services
from apikeys.serializers import (
    ApiKeyCreateSerializer,
    ApiKeyDetailSerializer,
    ApiKeySerializer,
    ApiKeyUpdateSerializer,
    IssuedKeySerializer,
)
from infra.pagination import Pagination, paginate
from portal.errors import PortalError


def require_key_manager(membership: OrganizationMember, *, revoking: bool = False) -> None:
    """Owners and admins manage keys. A disabled organization's keys can be read and revoked,
    not created, changed or rotated (403 `account_disabled`): `/v1` refuses them anyway."""
    if not membership.can_manage_keys:
        raise PortalError("permission_denied", "Only owners and admins can manage API keys.")
    if not revoking and membership.org.status == Organization.Status.DISABLED:
        raise PortalError(
            "account_disabled",
            "This organization is disabled: its API keys can be read and revoked, "
            "not created, changed or rotated.",
        )


def _issued_body(issued: services.IssuedKey) -> dict:
    issued.key.key = issued.plaintext
    return IssuedKeySerializer(issued.key).data


def create_key(*, request, membership: OrganizationMember) -> Response:
    require_key_manager(membership)
    data = ApiKeyCreateSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    issued = services.api_key_create(
        org=membership.org, created_by=request.user, now=timezone.now(), **data.validated_data
    )
    return Response(_issued_body(issued), status=201)


def list_keys(*, request, view, membership: OrganizationMember) -> Response:
    return paginate(
        request=request,
        view=view,
        queryset=selectors.org_keys(org=membership.org),
        serialize=lambda rows: ApiKeySerializer(rows, many=True).data,
    )


def revoke_key(*, request, membership: OrganizationMember, key_id: str) -> Response:
    require_key_manager(membership, revoking=True)
    key = selectors.get_org_key_or_404(org=membership.org, key_id=key_id)
    key = services.api_key_revoke(
        key=key, actor=request.user, now=timezone.now(), reason="revoked by owner"
    )
    return Response(ApiKeySerializer(key).data)


class KeyListView(APIView):
    pagination_class = Pagination  # documents GET as the paginated page `list_keys` returns

    @extend_schema(responses=ApiKeySerializer(many=True), operation_id="keys_list")
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        return list_keys(request=request, view=self, membership=membership)

    @extend_schema(
        request=ApiKeyCreateSerializer,
        responses={201: IssuedKeySerializer},
        operation_id="keys_create",
    )
    def post(self, request, org_id):
        return create_key(
            request=request, membership=get_membership_or_404(user=request.user, org_id=org_id)
        )


class KeyDetailView(APIView):
    @extend_schema(responses=ApiKeyDetailSerializer, operation_id="keys_retrieve")
    def get(self, request, org_id, key_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        key = selectors.get_org_key_or_404(org=membership.org, key_id=key_id)
        return Response(ApiKeyDetailSerializer(key, context={"now": timezone.now()}).data)

    @extend_schema(
        request=ApiKeyUpdateSerializer, responses=ApiKeyDetailSerializer, operation_id="keys_update"
    )
    def patch(self, request, org_id, key_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        key = selectors.get_org_key_or_404(org=membership.org, key_id=key_id)
        require_key_manager(membership)
        data = ApiKeyUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        key = services.api_key_update(
            key=key,
            actor=request.user,
            now=timezone.now(),
            name=changes.get("name"),
            allowed_models=changes.get("allowed_models"),
            clear_allowed_models="allowed_models" in changes and changes["allowed_models"] is None,
            controls={
                name: changes[name]
                for name in ("limits", "budget", "allowed_ips")
                if name in changes
            },
        )
        return Response(ApiKeyDetailSerializer(key, context={"now": timezone.now()}).data)

    @extend_schema(responses={200: ApiKeySerializer}, operation_id="keys_revoke")
    def delete(self, request, org_id, key_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        return revoke_key(request=request, membership=membership, key_id=key_id)


class KeyRotateView(APIView):
    @extend_schema(request=None, responses={201: IssuedKeySerializer}, operation_id="keys_rotate")
    def post(self, request, org_id, key_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        key = selectors.get_org_key_or_404(org=membership.org, key_id=key_id)
        require_key_manager(membership)
        issued = services.api_key_rotate(key=key, actor=request.user, now=timezone.now())
        return Response(_issued_body(issued), status=201)


class PortalKeyListView(APIView):
    """Web-app compatibility: the caller's personal org's keys."""

    pagination_class = Pagination

    @extend_schema(responses=ApiKeySerializer(many=True), operation_id="portal_keys_list")
    def get(self, request):
        return list_keys(
            request=request, view=self, membership=personal_membership(user=request.user)
        )

    @extend_schema(
        request=ApiKeyCreateSerializer,
        responses={201: IssuedKeySerializer},
        operation_id="portal_keys_create",
    )
    def post(self, request):
        return create_key(request=request, membership=personal_membership(user=request.user))


class PortalKeyDetailView(APIView):
    @extend_schema(responses={200: ApiKeySerializer}, operation_id="portal_keys_revoke")
    def delete(self, request, key_id):
        return revoke_key(
            request=request, membership=personal_membership(user=request.user), key_id=key_id
        )

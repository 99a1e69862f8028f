"""Org-scoped key reads for the dashboard and admin."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from accounts.models import Organization
from apikeys.models import ApiKey
from portal.errors import PortalError


def org_keys(*, org: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(org=org).order_by("-created_at", "id")


def get_org_key_or_404(*, org: Organization, key_id: object) -> ApiKey:
    """A key of `org`; any other org's key, or a malformed id, is 404."""
    try:
        key_uuid = uuid.UUID(str(key_id))
    except ValueError:
        raise PortalError("not_found", "API key not found.") from None
    key = ApiKey.objects.filter(org=org, pk=key_uuid).select_related("org").first()
    if key is None:
        raise PortalError("not_found", "API key not found.")
    return key


def key_lineage(*, key_id: object) -> list:
    """The key and every key rotated into it (`replaced_by`, transitively): one key to
    its owner, whose spend against a budget carries over from secret to secret."""
    ids, frontier = [key_id], [key_id]
    while frontier:
        frontier = [
            pk
            for pk in ApiKey.objects.filter(replaced_by_id__in=frontier).values_list(
                "pk", flat=True
            )
            if pk not in ids
        ]
        ids += frontier
    return ids

"""DRF authentication for the dashboard API: a bearer JWT from the configured provider."""

from __future__ import annotations

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from accounts import services, tokens
from accounts.models import User
from portal.errors import PortalError


class BearerJWTAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise PortalError("invalid_token", "The Authorization header must be 'Bearer <token>'.")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise PortalError("invalid_token") from None
        identity = tokens.verify_dashboard_token(raw)
        user = services.user_get_or_provision(identity=identity, now=timezone.now())
        if user.status != User.Status.ACTIVE:
            raise PortalError("user_disabled")
        return (user, identity)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'

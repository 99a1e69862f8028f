"""Dashboard token verification (placeholder until the JWT work lands)."""

from accounts.services import Identity
from portal.errors import PortalError


def verify_dashboard_token(raw: str) -> Identity:
    raise PortalError("invalid_token")

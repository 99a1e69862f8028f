"""The one error catalog and the handlers that turn errors into the stable body.

Services raise `PortalError(code=...)`; the DRF exception handler and Django's
error views render every failure as

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

with the request's `x-request-id` header set by the middleware.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorKind:
    status: int
    type: str
    message: str


CATALOG: dict[str, ErrorKind] = {
    # request shape
    "invalid_request_error": ErrorKind(400, "invalid_request_error", "The request is invalid."),
    "invalid_json": ErrorKind(400, "invalid_request_error", "The request body is not valid JSON."),
    "request_too_large": ErrorKind(413, "invalid_request_error", "The request body is too large."),
    "method_not_allowed": ErrorKind(405, "invalid_request_error", "Method not allowed."),
    "unsupported_media_type": ErrorKind(415, "invalid_request_error", "Send a JSON body."),
    "not_found": ErrorKind(404, "invalid_request_error", "Not found."),
    "context_length_exceeded": ErrorKind(
        400, "invalid_request_error", "The prompt and max_tokens exceed the model's context window."
    ),
    "unsupported_parameter": ErrorKind(
        400, "invalid_request_error", "This parameter is not supported."
    ),
    # identity
    "not_authenticated": ErrorKind(
        401, "authentication_error", "Authentication credentials were not provided."
    ),
    "invalid_token": ErrorKind(401, "authentication_error", "The bearer token is invalid."),
    "token_expired": ErrorKind(401, "authentication_error", "The bearer token has expired."),
    "invalid_api_key": ErrorKind(401, "invalid_request_error", "Incorrect API key provided."),
    "api_key_revoked": ErrorKind(401, "invalid_request_error", "This API key has been revoked."),
    "api_key_expired": ErrorKind(401, "invalid_request_error", "This API key has expired."),
    "api_key_disabled": ErrorKind(403, "permission_error", "This API key has been disabled."),
    "account_paused": ErrorKind(403, "permission_error", "This account is paused."),
    "account_disabled": ErrorKind(403, "permission_error", "This account is disabled."),
    "ip_not_allowed": ErrorKind(
        403, "permission_error", "This API key may not be used from this IP address."
    ),
    "user_disabled": ErrorKind(403, "permission_error", "This user is disabled."),
    "permission_denied": ErrorKind(
        403, "permission_error", "You do not have permission to do this."
    ),
    # plans and limits
    "key_limit_reached": ErrorKind(
        409, "invalid_request_error", "The plan's active API key limit is reached."
    ),
    "model_not_found": ErrorKind(404, "invalid_request_error", "The model does not exist."),
    "model_not_allowed": ErrorKind(403, "permission_error", "This key may not use this model."),
    "model_disabled": ErrorKind(403, "permission_error", "This model is currently disabled."),
    "rate_limit_exceeded": ErrorKind(429, "rate_limit_error", "Rate limit reached."),
    "insufficient_quota": ErrorKind(
        429, "insufficient_quota", "You exceeded your plan's allowance."
    ),
    "budget_exceeded": ErrorKind(
        429,
        "insufficient_quota",
        "This API key's budget for the period is spent, or this request's worst-case cost"
        " exceeds what is left of it; lower max_tokens, or raise the key's budget.",
    ),
    # upstream
    "access_paused": ErrorKind(503, "service_unavailable", "Access is paused."),
    "key_service_unavailable": ErrorKind(
        503, "service_unavailable", "API keys cannot be checked right now; try again shortly."
    ),
    "fast_state_unavailable": ErrorKind(
        503,
        "service_unavailable",
        "Limits cannot be checked right now; try again shortly.",
    ),
    "no_healthy_router": ErrorKind(
        503, "service_unavailable", "No healthy router can serve this model now."
    ),
    "upstream_timeout": ErrorKind(504, "timeout", "The model took too long to answer."),
    "upstream_error": ErrorKind(502, "api_error", "The model backend failed to answer."),
    "upstream_rejected_request": ErrorKind(
        400, "invalid_request_error", "The model backend rejected the request as invalid."
    ),
    "invalid_model_output": ErrorKind(
        502,
        "api_error",
        "The model's answer did not follow the requested tool choice or output format.",
    ),
    "request_timeout": ErrorKind(
        408, "invalid_request_error", "The request body did not arrive in time."
    ),
    "internal_error": ErrorKind(500, "api_error", "Internal server error."),
}


# 503s that clear by themselves, and the `retry-after` (seconds) their answers carry. A staff
# pause or a pool drain lasts minutes: a client polling every 30 s is gentle. Unkey outages
# are usually short. The OpenAI and Anthropic SDKs wait this long between their automatic
# retries (they honour up to 60 s).
RETRY_AFTER_SECONDS: dict[str, int] = {
    "access_paused": 30,
    "key_service_unavailable": 5,
    "fast_state_unavailable": 2,
}


def retry_after_seconds(code: str) -> int | None:
    """The `retry-after` of an error code's answer, or None for errors a wait does not fix."""
    if code == "no_healthy_router":
        # Routers down: an open breaker lets a trial request through after its cooldown
        # (30 s by default). A drained or disabled pool answers the same way.
        return max(1, math.ceil(settings.BREAKER_COOLDOWN_MS / 1000))
    return RETRY_AFTER_SECONDS.get(code)


class PortalError(Exception):
    """A domain error with a stable code from CATALOG."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        kind = CATALOG[code]
        self.code = code
        self.message = message or kind.message
        self.param = param
        self.status = status or kind.status
        self.type = kind.type
        retry_after = retry_after_seconds(code) if self.status == 503 else None
        self.headers = {
            **({"retry-after": str(retry_after)} if retry_after else {}),
            **(headers or {}),
        }
        super().__init__(self.message)

    def body(self) -> dict:
        return error_body(code=self.code, message=self.message, param=self.param, type_=self.type)


def error_body(
    *, code: str, message: str, param: str | None = None, type_: str | None = None
) -> dict:
    kind = CATALOG.get(code)
    return {
        "error": {
            "message": message,
            "type": type_ or (kind.type if kind else "api_error"),
            "param": param,
            "code": code,
        }
    }


def _first_validation_error(detail, path: str = "") -> tuple[str | None, str]:
    """(param, message) of the first field error in a DRF ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                name = path
            elif isinstance(key, int) or str(key).isdigit():
                name = f"{path}[{key}]"  # a list item's error
            else:
                name = f"{path}.{key}" if path else str(key)
            return _first_validation_error(value, name)
    if isinstance(detail, list) and detail:
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                return _first_validation_error(
                    value, f"{path}[{index}]" if isinstance(value, dict) else path
                )
            return (path or None), str(value)
    return (path or None), str(detail)


def drf_exception_handler(exc, context) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every API failure in the stable shape."""
    from django.core.exceptions import RequestDataTooBig

    if isinstance(exc, RequestDataTooBig):
        # DRF reads the body inside the view, so the middleware's process_exception never sees this.
        exc = PortalError("request_too_large")
    if isinstance(exc, PortalError):
        headers = dict(exc.headers)
        if exc.status == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
        return Response(exc.body(), status=exc.status, headers=headers)

    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    if isinstance(exc, drf_exceptions.ValidationError):
        param, message = _first_validation_error(exc.detail)
        if param and not message.lower().startswith(param.lower()):
            message = f"{param}: {message}"
        return Response(
            error_body(code="invalid_request_error", message=message, param=param), status=400
        )
    mapping = {
        drf_exceptions.NotAuthenticated: "not_authenticated",
        drf_exceptions.AuthenticationFailed: "invalid_token",
        drf_exceptions.PermissionDenied: "permission_denied",
        drf_exceptions.NotFound: "not_found",
        drf_exceptions.MethodNotAllowed: "method_not_allowed",
        drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
        drf_exceptions.ParseError: "invalid_json",
        drf_exceptions.Throttled: "rate_limit_exceeded",
    }
    for cls, code in mapping.items():
        if isinstance(exc, cls):
            headers = {}
            if isinstance(
                exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed
            ):
                headers["WWW-Authenticate"] = 'Bearer realm="api"'
            detail = exc.detail if isinstance(exc.detail, str) else CATALOG[code].message
            return Response(
                error_body(code=code, message=str(detail)),
                status=CATALOG[code].status,
                headers=headers,
            )
    if isinstance(exc, drf_exceptions.APIException):
        return Response(
            error_body(code="invalid_request_error", message=str(exc.detail)),
            status=exc.status_code,
        )
    logger.exception("unhandled error", exc_info=exc)
    return Response(
        error_body(code="internal_error", message=CATALOG["internal_error"].message), status=500
    )


def json_error_response(
    code: str, message: str | None = None, *, status: int | None = None
) -> JsonResponse:
    kind = CATALOG[code]
    return JsonResponse(
        error_body(code=code, message=message or kind.message), status=status or kind.status
    )


def handler400(request, exception=None):
    return json_error_response("invalid_request_error")


def handler403(request, exception=None):
    return json_error_response("permission_denied")


def unknown_url_message(request) -> str:
    return f"Unknown request URL: {request.method} {request.path}. Please check the URL."


def handler404(request, exception=None):
    return json_error_response("not_found", unknown_url_message(request))


@csrf_exempt
def unknown_url(request, *args, **kwargs):
    """The catch-all route under the API prefixes: a JSON 404 even with DEBUG on, where
    Django would otherwise answer with its HTML technical 404 page."""
    return handler404(request)


def handler500(request):
    return json_error_response("internal_error")

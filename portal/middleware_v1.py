"""The /v1 API's short way through the middleware (issue 17).

settings.MIDDLEWARE places `V1ShortcutMiddleware` after the request id, body deadline,
CORS and security middleware: those apply to /v1 as to every path. Below it sit the
browser app's layers (static files, sessions, CSRF, users, messages): a /v1 request is
authenticated by its API key, never by a session or a cookie, so for /v1 paths this
middleware resolves the URL and calls the view itself, and adds what the skipped layers
would have added to an API answer: `X-Frame-Options` and a `Content-Length` (Django's
CommonMiddleware), so the framing on the wire stays the same.

A view's RequestDataTooBig or body timeout is answered as RequestIdMiddleware's
process_exception answers it; any other exception propagates as it did (Django's
handler500: the stable JSON 500). Paths that do not resolve take the usual way.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.urls import Resolver404, get_resolver

from portal.errors import json_error_response
from portal.middleware import BodyTimeout

PREFIX = "/v1/"


@lru_cache(maxsize=256)
def _resolve(resolver, path: str):
    """The URL resolution of a /v1 path, kept: the same few paths come again and again
    (per URLconf: tests swap it). Unknown paths resolve to the catch-all 404 view, so
    the cache is bounded rather than per path forever."""
    return resolver.resolve(path)


class V1ShortcutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path_info.startswith(PREFIX):
            return self.get_response(request)
        try:
            match = _resolve(get_resolver(), request.path_info)
        except Resolver404:
            return self.get_response(request)
        request.resolver_match = match
        try:
            response = match.func(request, *match.args, **match.kwargs)
        except RequestDataTooBig:
            response = json_error_response("request_too_large")
        except BodyTimeout:
            response = json_error_response("request_timeout")
        if hasattr(response, "render") and callable(response.render):
            response = response.render()  # a TemplateResponse (DRF's Response is one)
        if response.get("X-Frame-Options") is None and not getattr(
            response, "xframe_options_exempt", False
        ):
            response["X-Frame-Options"] = getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()
        if not response.streaming and not response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response

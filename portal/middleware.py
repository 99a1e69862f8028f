"""Request ids: every response carries `x-request-id` (`req_…`)."""

import secrets

from django.core.exceptions import RequestDataTooBig

from portal.errors import json_error_response

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def new_request_id() -> str:
    """`req_` + 24 base62 characters (about 143 bits)."""
    return "req_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = new_request_id()
        response = self.get_response(request)
        response["x-request-id"] = request.request_id
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, RequestDataTooBig):
            return json_error_response("request_too_large")
        return None

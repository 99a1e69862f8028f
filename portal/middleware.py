"""Request ids: every response carries `x-request-id` (`req_…`)."""

import secrets

from django.core.exceptions import RequestDataTooBig

from portal.errors import json_error_response
from portal.logs import current_request_id

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


# Random bytes below 248 (4 x 62) map uniformly onto the alphabet; the other 8 values are
# dropped. One `token_bytes` call instead of 24 `secrets.choice` calls.
_TO_ALPHABET = bytes(_ALPHABET.encode()[b % 62] for b in range(248)) + bytes(range(248, 256))
_DROPPED = bytes(range(248, 256))


def new_request_id() -> str:
    """`req_` + 24 base62 characters (about 143 bits)."""
    chars = b""
    while len(chars) < 24:
        chars += secrets.token_bytes(32).translate(_TO_ALPHABET, _DROPPED)
    return "req_" + chars[:24].decode()


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = new_request_id()
        token = current_request_id.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["x-request-id"] = request.request_id
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, RequestDataTooBig):
            return json_error_response("request_too_large")
        return None

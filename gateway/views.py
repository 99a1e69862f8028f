"""The hosted /v1 API. Keys are checked by the flow, not by DRF's authentication."""

from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from gateway import counting, flow, keyaccess, protocols, replies, responses, status
from pools.catalog import get_catalog
from portal.errors import PortalError, unknown_url_message


class _NoNegotiation(BaseContentNegotiation):
    """The /v1 views build their own responses (JSON or SSE, OpenAI or Anthropic shape),
    so DRF's Accept-header negotiation would pick a renderer nobody uses."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@method_decorator(csrf_exempt, name="dispatch")
class _GatewayView(View):
    """The /v1 generation endpoints: plain Django views, not DRF's APIView (issue 17). The
    flow reads the key, parses the body and builds every answer itself, so DRF's request
    wrapper, negotiation and exception handling had nothing to do but cost CPU per request.
    Not in the OpenAPI schema (neither were the DRF views: exclude=True)."""

    http_method_names = ["post", "options"]
    shape: protocols.Shape

    def post(self, request):
        response = flow.serve(request, self.shape)
        if self.shape.style == "anthropic":
            _anthropic_headers(request, response)
        return response

    def http_method_not_allowed(self, request, *args, **kwargs):
        """405 in the endpoint's own error shape (Anthropic's under /v1/messages), with Allow."""
        err = PortalError("method_not_allowed", f'Method "{request.method}" not allowed.')
        response = replies.error_response(err, style=self.shape.style)
        response["Allow"] = "POST, OPTIONS"
        if self.shape.style == "anthropic":
            _anthropic_headers(request, response)
        return response


def _anthropic_headers(request, response) -> None:
    """Every answer under /v1/messages carries Anthropic's request-id and rate-limit headers."""
    replies.with_anthropic_headers(response, request_id=request.request_id, now=timezone.now())


class ChatCompletionsView(_GatewayView):
    shape = protocols.CHAT


class CompletionsView(_GatewayView):
    shape = protocols.COMPLETIONS


class MessagesView(_GatewayView):
    shape = protocols.MESSAGES


class ResponsesView(_GatewayView):
    shape = responses.RESPONSES


@csrf_exempt
def stored_response(request, response_id, *args, **kwargs):
    """`GET` / `DELETE /v1/responses/{id}` (and its `cancel`, `input_items`): the Portal
    stores no responses, so there is none to read, cancel or delete; 400 saying so."""
    err = PortalError(
        "invalid_request_error",
        f"Response {response_id!r} cannot be retrieved, cancelled or deleted: responses are not stored"
        " (`store` is ignored). Keep the output you received and send the whole conversation in `input`.",
        param="response_id",
    )
    return replies.error_response(err)


class CountTokensView(APIView):
    """`POST /v1/messages/count_tokens` (the anthropic SDK's `messages.count_tokens`):
    `{"input_tokens": N}`, the estimate the gateway reserves with; the key is checked as for
    `/v1/models`; nothing is billed. Errors in Anthropic's shape."""

    authentication_classes = ()
    permission_classes = ()
    content_negotiation_class = _NoNegotiation

    @extend_schema(exclude=True)
    def post(self, request):
        try:
            secret = flow.api_key_from(request._request)
            tokens = counting.count_input_tokens(
                secret=secret,
                body=flow.read_body(request._request),
                request_id=request._request.request_id,
                client_ip=flow.client_ip(request._request),
            )
        except PortalError as err:
            return replies.error_response(err, style="anthropic")
        return replies.json_response({"input_tokens": tokens})

    def http_method_not_allowed(self, request, *args, **kwargs):
        err = PortalError("method_not_allowed", f'Method "{request.method}" not allowed.')
        return replies.error_response(err, style="anthropic")

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        _anthropic_headers(request, response)
        return response


@csrf_exempt
def unknown_url(request, *args, **kwargs):
    """Every other /v1/ path: a JSON 404 the SDKs can read, DEBUG or not; Anthropic's
    shape under /v1/messages/ (the Anthropic SDK's batches)."""
    style = protocols.MESSAGES.style if request.path.startswith("/v1/messages/") else "openai"
    response = replies.error_response(
        PortalError("not_found", unknown_url_message(request)), style=style
    )
    if style == "anthropic":
        _anthropic_headers(request, response)
    return response


class ModelsView(APIView):
    """`GET /v1/models`: the models this key may use (its context as admission reads it,
    one request against its requests/min) that an active pool serves now."""

    authentication_classes = ()
    permission_classes = ()
    content_negotiation_class = _NoNegotiation

    @extend_schema(exclude=True)
    def get(self, request):
        try:
            ctx = keyaccess.key_context(
                flow.api_key_from(request._request),
                request_id=request._request.request_id,
                client_ip=flow.client_ip(request._request),
            )
        except PortalError as err:
            return replies.error_response(err)
        names = keyaccess.usable_names(ctx, get_catalog())
        return replies.json_response(
            {"object": "list", "data": [keyaccess.model_object(name) for name in names]}
        )


class ModelView(APIView):
    """`GET /v1/models/{id}` (the openai SDK's `models.retrieve`): the entry `/v1/models`
    lists for that name, else 404 `model_not_found` (unknown, or not this key's)."""

    authentication_classes = ()
    permission_classes = ()
    content_negotiation_class = _NoNegotiation

    @extend_schema(exclude=True)
    def get(self, request, model_id: str):
        try:
            ctx = keyaccess.key_context(
                flow.api_key_from(request._request),
                request_id=request._request.request_id,
                client_ip=flow.client_ip(request._request),
            )
            if keyaccess.usable_model(ctx, get_catalog(), model_id) is None:
                raise keyaccess.model_not_found(model_id)
        except PortalError as err:
            return replies.error_response(err)
        return replies.json_response(keyaccess.model_object(model_id))


class HealthView(APIView):
    """`GET /health`: always 200 (it informs, it does not gate): `status` "ok" or "paused" (with
    the pause's customer message), each pool's status and public names, the names no active
    pool serves. No secrets."""

    authentication_classes = ()
    permission_classes = ()
    content_negotiation_class = _NoNegotiation

    @extend_schema(exclude=True)
    def get(self, request):
        return replies.json_response(status.service_status())

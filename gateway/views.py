"""The hosted /v1 API. Keys are checked by the flow, not by DRF's authentication."""

import json

from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from apikeys.authcontext import build_for_identity
from apikeys.providers import get_provider
from gateway import answers, flow, shapes, status
from pools.catalog import get_catalog
from portal.errors import PortalError, unknown_url_message


class _NoNegotiation(BaseContentNegotiation):
    """The /v1 views build their own responses (JSON or SSE, OpenAI or Anthropic shape),
    so DRF's Accept-header negotiation would pick a renderer nobody uses."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _GatewayView(APIView):
    authentication_classes = ()
    permission_classes = ()
    content_negotiation_class = _NoNegotiation
    shape: shapes.Shape

    @extend_schema(exclude=True)
    def post(self, request):
        return flow.serve(request._request, self.shape)

    def http_method_not_allowed(self, request, *args, **kwargs):
        """405 in the endpoint's own error shape (Anthropic's under /v1/messages)."""
        err = PortalError("method_not_allowed", f'Method "{request.method}" not allowed.')
        return answers.error_response(err, style=self.shape.style)


class ChatCompletionsView(_GatewayView):
    shape = shapes.CHAT


class CompletionsView(_GatewayView):
    shape = shapes.COMPLETIONS


class MessagesView(_GatewayView):
    shape = shapes.MESSAGES


@csrf_exempt
def unknown_url(request, *args, **kwargs):
    """Every other /v1/ path: a JSON 404 the SDKs can read, DEBUG or not; Anthropic's
    shape under /v1/messages/ (the Anthropic SDK's batches and count_tokens)."""
    style = shapes.MESSAGES.style if request.path.startswith("/v1/messages/") else "openai"
    return answers.error_response(PortalError("not_found", unknown_url_message(request)), style=style)


class ModelsView(APIView):
    """`GET /v1/models`: the models this key may use (its context read fresh from Postgres)
    that an active pool serves now."""

    authentication_classes = ()
    permission_classes = ()
    content_negotiation_class = _NoNegotiation

    @extend_schema(exclude=True)
    def get(self, request):
        try:
            secret = flow.api_key_from(request._request)
            ctx = _key_context(secret)
        except PortalError as err:
            return answers.error_response(err)
        catalog = get_catalog()
        plan = ctx["p"]
        data = []
        for name in catalog.public_names():
            entry = catalog.resolve(name)
            if not plan["all"] and entry.name not in plan["m"]:
                continue
            if ctx["am"] is not None and entry.name not in ctx["am"]:
                continue
            if not entry.serving_routes():
                continue  # only drained or disabled pools (or no enabled router) serve it
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "cortensor"})
        return answers.json_response({"object": "list", "data": data})


def _key_context(secret: str) -> dict:
    raw = build_for_identity(identity=get_provider().authenticate(secret, consume=False), now=timezone.now())
    if raw is None:
        raise PortalError("invalid_api_key")
    ctx = json.loads(raw)
    refusal = {
        "revoked": "api_key_revoked",
        "disabled": "api_key_disabled",
    }.get(ctx["ks"]) or {"paused": "account_paused", "disabled": "account_disabled"}.get(ctx["os"])
    if refusal:
        raise PortalError(refusal)
    if ctx["kx"] and ctx["kx"] <= timezone.now().timestamp() * 1000:
        raise PortalError("api_key_expired")
    return ctx


class HealthView(APIView):
    """`GET /health`: always 200 (it informs, it does not gate): `status` "ok" or "paused" (with
    the pause's customer message), each pool's status and public names, the names no active
    pool serves. No secrets."""

    authentication_classes = ()
    permission_classes = ()
    content_negotiation_class = _NoNegotiation

    @extend_schema(exclude=True)
    def get(self, request):
        return answers.json_response(status.service_status())

"""HTTP answers of the /v1 API: errors in the OpenAI or Anthropic shape, rate-limit headers."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from django.http import HttpResponse

from gateway import anthropic
from gateway import budget as budgets
from gateway.limits import Admission
from gateway.refusals import ORDER
from portal.errors import CATALOG, PortalError


def _duration(ms: int) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `1h2m3s`, `250ms`."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    seconds = math.ceil(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?|(\d+)ms")


def _duration_ms(text: str) -> int | None:
    """The milliseconds of a `_duration` text (`1h2m3s`, `6m0s`, `250ms`); None if not one."""
    found = _DURATION.fullmatch(text)
    if found is None or not text:
        return None
    hours, minutes, seconds, ms = found.groups()
    if ms is not None:
        return int(ms)
    return ((int(hours or 0) * 60 + int(minutes or 0)) * 60 + int(seconds or 0)) * 1000


def _rfc3339(at: datetime) -> str:
    """`2026-01-02T03:04:05Z`, rounded up to the second (the limit is whole by then)."""
    at = at.astimezone(UTC)
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_headers(
    headers: Mapping[str, str], *, request_id: str, now: datetime
) -> dict[str, str]:
    """Anthropic's names for what an answer already says: `request-id` (the SDK's
    `_request_id`) is x-request-id; `anthropic-ratelimit-{requests,tokens}-{limit,remaining,
    reset}` mirror the x-ratelimit-* values present, each reset as an RFC 3339 time."""
    out = {"request-id": request_id}
    for kind in ("requests", "tokens"):
        for part in ("limit", "remaining", "reset"):
            value = headers.get(f"x-ratelimit-{part}-{kind}")
            if value is None:
                continue
            if part == "reset":
                ms = _duration_ms(value)
                if ms is None:
                    continue
                value = _rfc3339(now + timedelta(milliseconds=ms))
            out[f"anthropic-ratelimit-{kind}-{part}"] = value
    return out


def with_anthropic_headers(
    response: HttpResponse, *, request_id: str, now: datetime
) -> HttpResponse:
    """`response` (whole, streamed or an error; headers not yet sent) with `anthropic_headers`."""
    for name, value in anthropic_headers(response.headers, request_id=request_id, now=now).items():
        response[name] = value
    return response


def rate_limit_headers(adm: Admission) -> dict[str, str]:
    if not adm.rpm_limit:
        return {}
    return {
        "x-ratelimit-limit-requests": str(adm.rpm_limit),
        "x-ratelimit-remaining-requests": str(adm.rpm_remaining),
        "x-ratelimit-reset-requests": _duration(adm.rpm_reset_ms),
        "x-ratelimit-limit-tokens": str(adm.tpm_limit),
        "x-ratelimit-remaining-tokens": str(adm.tpm_remaining),
        "x-ratelimit-reset-tokens": _duration(adm.tpm_reset_ms),
    }


def json_response(
    body: dict, *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(err: PortalError, *, style: str = "openai") -> HttpResponse:
    headers = dict(err.headers)
    if err.code == "insufficient_quota":
        headers["x-should-retry"] = "false"
    if style == "anthropic":
        body = anthropic.error_body(
            type_=anthropic.anthropic_error_type(err.code, err.status), message=err.message
        )
    else:
        body = err.body()
    return json_response(body, status=err.status, headers=headers)


def retry_headers(retry_after_ms: int) -> dict[str, str]:
    return {
        "retry-after": str(max(1, math.ceil(retry_after_ms / 1000))),
        "retry-after-ms": str(max(retry_after_ms, 0)),
    }


# Admission outcomes that refuse the request, with their stable code and message
# (gateway/refusals.py holds them in admission's order).
REFUSALS: dict[str, tuple[str, str | None]] = {
    r.status: (r.code, r.message) for r in ORDER if not r.caller
}


def refusal(
    adm: Admission, *, model: str, budget: budgets.Budget | None = None, kind: str = "chat"
) -> PortalError:
    """The error for an admission that did not pass; `budget` is the request's on the
    resolved model (None when the model is unknown), `kind` the request's."""
    if adm.status == "paused":
        return PortalError("access_paused", adm.pause_message or None)
    if adm.status == budgets.CONTEXT_LENGTH:
        return budgets.context_length_error(budget, kind=kind)
    code, message = REFUSALS[adm.status]
    if code in ("model_not_found", "model_not_allowed", "model_disabled") and model:
        message = {
            "model_not_found": f"The model `{model}` does not exist or you do not have access to it.",
            "model_not_allowed": f"This key or plan may not use the model `{model}`.",
            "model_disabled": f"The model `{model}` is temporarily disabled.",
        }[code]
    if adm.status == "rate_tokens" and budget is not None and budget.total > adm.tpm_limit:
        return _larger_than_tokens_per_minute(adm, budget)
    if adm.scope and message:
        message = f"{message[:-1]} ({_SCOPES[adm.scope]})."
    headers = {}
    if CATALOG[code].status == 429:
        headers = {**rate_limit_headers(adm), **retry_headers(adm.retry_after_ms)}
        if adm.scope:
            headers["x-ratelimit-scope"] = adm.scope
    if code == "budget_exceeded":
        # Spent until its period ends: the SDKs must not wait and send it again.
        headers["x-should-retry"] = "false"
    return PortalError(
        code, message, param="model" if code.startswith("model") else None, headers=headers
    )


# Whose limit refused a request (admit.lua's scope), as the refusal's message says it.
_SCOPES = {"key": "this API key's limit", "org": "the organization's limit"}


def _larger_than_tokens_per_minute(adm: Admission, budget: budgets.Budget) -> PortalError:
    """A request whose worst case exceeds the whole tokens-per-minute limit never fits: no
    retry-after, and `x-should-retry: false` so the SDKs do not wait and send it again."""
    return PortalError(
        "rate_limit_exceeded",
        f"This request needs {budget.total} tokens (prompt {budget.prompt} + max_tokens {budget.completion}),"
        f" more than {'this API key' if adm.scope == 'key' else 'this plan'}'s limit of"
        f" {adm.tpm_limit} tokens per minute; lower max_tokens or shorten the prompt.",
        headers={**rate_limit_headers(adm), "x-should-retry": "false"},
    )

"""Structured logs: one JSON object per line, with the request id, without secrets.

settings.LOGGING uses `JsonFormatter` when LOG_FORMAT=json (the default unless DEBUG)
and `RequestIdFilter` always. Prompts never reach a log: the gateway logs none, and the
formatter writes a fixed set of fields plus a short allow-list of extras, never whole
objects such as the request Django attaches to its error records. Bearer tokens, API
keys, `password=`-style values and query parameters named like a secret in messages and
tracebacks are masked; gunicorn's access log goes through the same `redact`
(portal/accesslog.py).
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

# The id of the request this thread (or greenlet) serves; set by portal.middleware.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)

# Extras a record may carry into the JSON line (`logger.info(..., extra={...})`).
EXTRA_FIELDS = ("status_code", "router_id", "org_id", "task", "duration_ms", "count")

_REDACTIONS = (
    (re.compile(r"\bctr_live_[0-9A-Za-z]{4,}"), "ctr_live_***"),
    (re.compile(r"(?i)\b(bearer\s+)(?!\*\*\*)[^\s\"',;]+"), r"\1***"),
    (
        re.compile(
            r"(?i)\b(api[_-]?key|password|passwd|secret|token|authorization)(\"?'?\s*[:=]\s*\"?'?)"
            r"(?!bearer\s)(?!\*\*\*)[^\s\"',;}]+"
        ),
        r"\1\2***",
    ),
    (re.compile(r"(?i)(://[^/\s:@]+:)[^@/\s]+@"), r"\1***@"),  # credentials in URLs
    # Query-string parameters named like a secret (`?key=`, `&access_token=`, `?sig=`).
    (
        re.compile(
            r"(?i)([?&;][^=&\s\"']*(?:key|token|secret|password|passwd|auth|sig|credential)"
            r"[^=&\s\"']*=)(?!\*\*\*)[^&\s\"'#]+"
        ),
        r"\1***",
    ),
)
# Every pattern above needs one of these: text without any (most log lines, most request
# lines) is returned after one search instead of five substitutions.
_MAYBE_SECRET = re.compile(r"(?i)ctr_live_|bearer|api|passw|secret|token|authorization|://|[?&;]")


def redact(text: str) -> str:
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    """Give every record `request_id`: its own (`extra=`), its request's, else the one being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # django.request logs after the middleware returned, but passes the request.
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or current_request_id.get(),
            "process": record.process,
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str | int | float | bool):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """Development: readable lines, still with the request id and masked secrets."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return redact(super().format(record))

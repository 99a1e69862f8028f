"""Gunicorn's access log, with the redaction of the JSON logs (portal/logs.py).

portal/gunicorn.py names `RedactingLogger` as its `logger_class`: every access-log line
goes through `portal.logs.redact`, so a key sent in a query string (`?api_key=ctr_live_…`,
`?access_token=…`), a referer or a header never reaches the log in plaintext. The
credential headers themselves are replaced whole.

Only the atoms that `access_log_format` names are built and redacted (issue 17): gunicorn's
own `atoms()` adds every request header, response header and WSGI environ entry to each
line's dict, and redacting all of them cost about a tenth of a worker's CPU per request.

Imported by gunicorn's master: only the standard library, gunicorn and portal.logs
(which imports nothing else), never Django.
"""

from __future__ import annotations

import logging
import re
import time
import traceback

from gunicorn.glogging import Logger

from portal.logs import redact

# Request headers whose value is a credential: never logged, whatever a custom
# `access_log_format` asks for.
SECRET_HEADERS = frozenset(
    {"{authorization}i", "{proxy-authorization}i", "{x-api-key}i", "{api-key}i", "{cookie}i"}
)
# Atoms that hold client-controlled text: the request line, the path, the query string, the
# referer and the user agent.
TEXT_ATOMS = ("r", "U", "q", "f", "a")
# The environ entries gunicorn's plain atoms are made of (`u` reads a Basic user name).
BASE_ENVIRON = (
    "REMOTE_ADDR",
    "REQUEST_METHOD",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "PATH_INFO",
    "QUERY_STRING",
    "HTTP_REFERER",
    "HTTP_USER_AGENT",
    "HTTP_AUTHORIZATION",
)
_FORMAT_KEY = re.compile(r"%\(([^)]*)\)")


class _Plan:
    """What one `access_log_format` needs, worked out once: the atom names it uses
    (lower-cased for `{header}` atoms, as gunicorn's SafeAtoms looks them up), the format
    with those names lower-cased (so a plain dict fills it), and which atoms are redacted."""

    def __init__(self, fmt: str):
        self.source = fmt
        self.keys = frozenset(
            key.lower() if key.startswith("{") else key for key in _FORMAT_KEY.findall(fmt)
        )
        self.format = _FORMAT_KEY.sub(
            lambda m: f"%({m[1].lower() if m[1].startswith('{') else m[1]})", fmt
        )
        self.wants_in = any(key.endswith("}i") for key in self.keys)
        self.wants_out = any(key.endswith("}o") for key in self.keys)
        self.environ = tuple(key[1:-2] for key in self.keys if key.endswith("}e"))
        self.text = tuple(name for name in TEXT_ATOMS if name in self.keys)
        self.secret = tuple(key for key in self.keys if key in SECRET_HEADERS)
        self.masked = tuple(
            key for key in self.keys if key.endswith(("}i", "}e")) and key not in SECRET_HEADERS
        )


class RedactingLogger(Logger):
    _plan_cache: _Plan | None = None
    _now_second = -1
    _now_text = ""

    def now(self) -> str:
        """gunicorn's `%(t)s` (Apache's common log time), formatted once a second."""
        second = int(time.time())
        if second != self._now_second:
            self._now_text = time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
            self._now_second = second
        return self._now_text

    def access(self, resp, req, environ, request_time):
        """gunicorn's access(), writing the line straight to the handler's stream when the
        access log is gunicorn's plain one (stdout or a file: one StreamHandler, the
        message alone, no filters): the same line, without `logging`'s record, filter and
        formatter steps, which were most of the line's cost. Any other set-up (syslog, a
        logconfig, ...) goes through `logging` as before."""
        handler = self._plain_handler()
        if handler is None:
            return super().access(resp, req, environ, request_time)
        try:
            atoms = self.atoms(resp, req, environ, request_time)
            for name, value in atoms.items():  # as gunicorn's SafeAtoms
                if isinstance(value, str) and '"' in value:
                    atoms[name] = value.replace('"', '\\"')
            line = self._plan().format % atoms + handler.terminator
            handler.acquire()
            try:
                handler.stream.write(line)
                handler.stream.flush()
            finally:
                handler.release()
        except Exception:
            self.error(traceback.format_exc())

    def _plain_handler(self) -> logging.StreamHandler | None:
        log = self.access_log
        if not self.access_log_enabled or log.filters or log.propagate:
            return None
        if len(log.handlers) != 1 or not log.isEnabledFor(logging.INFO):
            return None
        handler = log.handlers[0]
        if type(handler) not in (logging.StreamHandler, logging.FileHandler):
            return None
        if handler.filters or handler.level > logging.INFO or handler.stream is None:
            return None
        formatter = handler.formatter
        if formatter is None or type(formatter) is not logging.Formatter:
            return None
        return handler if formatter._fmt == "%(message)s" else None

    def _plan(self) -> _Plan:
        plan = self._plan_cache
        if plan is None or plan.source != self.cfg.access_log_format:
            plan = self._plan_cache = _Plan(self.cfg.access_log_format)
        return plan

    def atoms(self, resp, req, environ, request_time):
        """Every atom the format uses ("-" for one the request lacks), redacted; no other."""
        plan = self._plan()
        # gunicorn's atoms of a request reduced to what the format reads: no headers unless
        # asked for, only the environ entries the plain atoms and the format name.
        small_env = {name: environ[name] for name in BASE_ENVIRON if name in environ}
        for name in plan.environ:
            for candidate in (name.upper(), name):
                if candidate in environ:
                    small_env[name] = environ[candidate]
        atoms = super().atoms(
            resp if plan.wants_out else _NoHeaders(resp),
            req if plan.wants_in else (),
            small_env,
            request_time,
        )
        used = {name: atoms.get(name, "-") for name in plan.keys}
        for name in plan.text:
            if isinstance(used[name], str):
                used[name] = redact(used[name])
        for name in plan.secret:
            if name in atoms:
                used[name] = "***"
        for name in plan.masked:
            if isinstance(used[name], str):
                used[name] = redact(used[name])
        return used


class _NoHeaders:
    """The response as gunicorn's atoms() reads it, without its headers."""

    __slots__ = ("sent", "status")
    headers = ()

    def __init__(self, resp):
        self.status = resp.status
        self.sent = getattr(resp, "sent", None)

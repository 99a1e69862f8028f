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

import re

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


class RedactingLogger(Logger):
    _format: str | None = None
    _keys: frozenset[str] = frozenset()

    def _used(self) -> frozenset[str]:
        """The atom names the configured format uses (lower-cased for `{header}` atoms,
        as gunicorn's SafeAtoms looks them up)."""
        fmt = self.cfg.access_log_format
        if fmt != self._format:
            self._keys = frozenset(
                key.lower() if key.startswith("{") else key for key in _FORMAT_KEY.findall(fmt)
            )
            self._format = fmt
        return self._keys

    def atoms(self, resp, req, environ, request_time):
        used = self._used()
        wants_in = any(key.endswith("}i") for key in used)
        wants_env = [key for key in used if key.endswith("}e")]
        wants_out = any(key.endswith("}o") for key in used)
        # gunicorn's atoms of a request reduced to what the format reads: no headers unless
        # asked for, only the environ entries the plain atoms and the format name.
        small_env = {name: environ[name] for name in BASE_ENVIRON if name in environ}
        for key in wants_env:
            name = key[1:-2].upper()
            for candidate in (name, key[1:-2]):
                if candidate in environ:
                    small_env[key[1:-2]] = environ[candidate]
        atoms = super().atoms(
            resp if wants_out else _NoHeaders(resp),
            req if wants_in else (),
            small_env,
            request_time,
        )
        for name in TEXT_ATOMS:
            if name in used and isinstance(atoms.get(name), str):
                atoms[name] = redact(atoms[name])
        for name in used:
            value = atoms.get(name)
            if name in SECRET_HEADERS and value is not None:
                atoms[name] = "***"
            elif name.endswith(("}i", "}e")) and isinstance(value, str):
                atoms[name] = redact(value)
        return {name: value for name, value in atoms.items() if name in used}


class _NoHeaders:
    """The response as gunicorn's atoms() reads it, without its headers."""

    __slots__ = ("sent", "status")
    headers = ()

    def __init__(self, resp):
        self.status = resp.status
        self.sent = getattr(resp, "sent", None)

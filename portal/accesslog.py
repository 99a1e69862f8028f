"""Gunicorn's access log, with the redaction of the JSON logs (portal/logs.py).

portal/gunicorn.py names `RedactingLogger` as its `logger_class`: every access-log line
goes through `portal.logs.redact`, so a key sent in a query string (`?api_key=ctr_live_…`,
`?access_token=…`), a referer or a header never reaches the log in plaintext. The
credential headers themselves are replaced whole.

Imported by gunicorn's master: only the standard library, gunicorn and portal.logs
(which imports nothing else), never Django.
"""

from __future__ import annotations

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


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in TEXT_ATOMS:
            if isinstance(atoms.get(name), str):
                atoms[name] = redact(atoms[name])
        for name, value in atoms.items():
            if name in SECRET_HEADERS:
                atoms[name] = "***"
            elif name.endswith(("}i", "}e")) and isinstance(value, str):
                atoms[name] = redact(value)
        return atoms

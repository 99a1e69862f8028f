"""The web server's worker class (portal/gunicorn.py): gevent's pywsgi server inside
gunicorn, with idle and slow-header timeouts.

gunicorn's own `gevent` worker parses HTTP in gunicorn's Python parser; its
`gevent_pywsgi` worker hands connections to gevent's pywsgi server, which costs less per
request (bench/README.md: about 0.35 ms less per request for one client, and more
requests/s at saturation on two cores). What pywsgi lacks is a limit on how long a
connection may sit idle between requests, or take to send its request head: without
one, idle keep-alive connections (or a slow-header client) hold greenlets of the
worker's `worker_connections` forever. This worker adds both:

- waiting for a request line (a new connection's first, or the next on a kept-alive
  one): `keepalive` seconds (WEB_KEEPALIVE), then the connection is closed;
- reading the request head once it started: `WEB_HEADER_TIMEOUT` seconds (10), then the
  connection is closed.

This module is imported by gunicorn's master: it must not import Django.
"""

from __future__ import annotations

import os

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler


class _Handler(PyWSGIHandler):
    idle_timeout = 75.0
    header_timeout = 10.0

    def read_requestline(self):
        with gevent.Timeout(self.idle_timeout, False):
            return super().read_requestline()
        return ""  # idle too long: pywsgi closes the connection on an empty request line

    def read_request(self, raw_requestline):
        timer = gevent.Timeout.start_new(self.header_timeout, _HeadTooSlow)
        try:
            return super().read_request(raw_requestline)
        finally:
            timer.close()


class _HeadTooSlow(Exception):
    """The client took longer than WEB_HEADER_TIMEOUT to send its request head (400)."""


class GeventWorker(GeventPyWSGIWorker):
    wsgi_handler = _Handler

    def init_process(self):
        _Handler.idle_timeout = float(self.cfg.keepalive) if self.cfg.keepalive else 75.0
        _Handler.header_timeout = float(os.environ.get("WEB_HEADER_TIMEOUT", "10"))
        super().init_process()

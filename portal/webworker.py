"""The web server's worker class (portal/gunicorn.py): gevent's pywsgi server inside
gunicorn, with idle and slow-header timeouts.

gunicorn's own `gevent` worker parses HTTP in gunicorn's Python parser; its
`gevent_pywsgi` worker hands connections to gevent's pywsgi server, which gave a little
more throughput at saturation on two cores (README.md, Performance). What pywsgi lacks is a limit on how long a
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


def settle_heap() -> None:
    """Once a worker has loaded the application (gunicorn's post_worker_init hook): import
    what the first /v1 request would, collect, and move every object alive now into the
    collector's permanent generation (gc.freeze). A full collection otherwise walks all
    of Django, DRF and the app each time (about 120,000 objects, 60-80 ms measured here,
    during which every request this worker holds waits); afterwards, only what came later."""
    import gc

    from django.urls import get_resolver

    for path in ("/v1/chat/completions", "/v1/messages", "/v1/models", "/health"):
        get_resolver().resolve(path)  # imports the views and the gateway behind them
    import gateway.flow  # noqa: F401

    gc.collect()
    gc.freeze()

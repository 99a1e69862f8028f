"""A web worker's life, for apps that keep per-process work (gateway/leases.py).

portal/gunicorn.py reports the worker's start and exit here; apps register what to run
then from their AppConfig.ready(), so the server configuration imports no app. Outside
gunicorn (runserver, Celery, tests) nothing is reported and `stop_deadline()` is None.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_on_start: list[Callable[[], None]] = []
_on_exit: list[Callable[[], None]] = []
_worker = None
_stop_seen: float | None = None


def on_worker_start(fn: Callable[[], None]) -> None:
    if fn not in _on_start:
        _on_start.append(fn)


def on_worker_exit(fn: Callable[[], None]) -> None:
    if fn not in _on_exit:
        _on_exit.append(fn)


def worker_started(worker) -> None:
    """gunicorn's post_worker_init: the worker has loaded the application."""
    global _worker
    _worker = worker
    for fn in _on_start:
        fn()


def worker_exiting() -> None:
    """gunicorn's worker_exit: the worker's loop has ended; the process exits next."""
    for fn in _on_exit:
        fn()


def stop_deadline() -> float | None:
    """When a stopping worker should end the requests it still runs (time.monotonic()),
    or None while it serves.

    gunicorn's master kills a worker graceful_timeout after asking it to stop (SIGTERM);
    the worker learns it when its `alive` flag drops, seen here at the first look after.
    The deadline leaves a margin (3 s, or a quarter of a short timeout) to record them.
    """
    global _stop_seen
    if _worker is None or _worker.alive:
        return None
    if _stop_seen is None:
        _stop_seen = time.monotonic()
    grace = float(_worker.cfg.graceful_timeout)
    return _stop_seen + grace - min(3.0, grace / 4)

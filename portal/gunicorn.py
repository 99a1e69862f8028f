"""Gunicorn settings for the web process; the Dockerfile, docker-compose and bench/ all
run this file, so production serves what the benchmark measured (bench/run.py).

    gunicorn -c portal/gunicorn.py portal.wsgi:application

gevent workers (gunicorn's `gevent` worker; portal/gevent_worker.py answers what its HTTP
parser refuses, such as a duplicate or conflicting Content-Length, with 400 in the stable
error shape): each request is a greenlet, so a worker holds thousands of slow or
streaming requests at once (router calls, Redis and
Postgres all yield while they wait); two workers use both cores of a small machine.
Under gevent, Postgres connections come from a pool (portal/settings.py,
DB_POOL_MAX_SIZE).

Environment (all optional): WEB_BIND (0.0.0.0:8000), WEB_WORKERS (2),
WEB_WORKER_CLASS (gevent; gthread also works), WEB_WORKER_CONNECTIONS (2000 per worker,
gevent), WEB_THREADS (4, gthread only), WEB_ACCESS_LOG ("-" = stdout; empty = none; secrets in
query strings and headers are masked, portal/accesslog.py),
WEB_TIMEOUT (330 s), WEB_KEEPALIVE (75 s).

Slow clients: the gevent worker gives a connection WEB_KEEPALIVE seconds to deliver
each request line and head (a new connection's first request, or the next on a
kept-alive one), then closes it; so an idle or slow-header client holds a greenlet for
at most that long. A tighter limit on the request head alone belongs to the proxy or
load balancer in front (nginx `client_header_timeout`, an ALB's own limits).

The keep-alive outlasts the idle expiry of clients and load balancers (httpx, under the
openai SDK: 5 s; AWS ALB: 60 s), so they drop an idle connection before the server does.
A server that closed first would race a client reusing the connection at that moment:
the request meets a closed socket (seen in bench/ with a 5 s keep-alive, about 1 in
1,000 requests at 200 req/s).

This file must not import Django or anything that opens a socket: the gevent worker
monkey-patches the standard library when it starts, after this file was read.
"""

import os
import resource

bind = [os.environ.get("WEB_BIND", "0.0.0.0:8000")]
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    # gunicorn's gevent worker, answering what its HTTP parser refuses (a duplicate or
    # conflicting Content-Length, ...) in the stable error shape: portal/gevent_worker.py.
    worker_class = "portal.gevent_worker.GeventWorker"
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "2000"))
threads = int(os.environ.get("WEB_THREADS", "4"))
backlog = 4096
# Streams may stay silent for the router read timeout (120 s) plus failover.
timeout = int(os.environ.get("WEB_TIMEOUT", "330"))
# On SIGTERM a worker stops accepting and lets requests finish this long; shortly before
# the master kills it, it ends and records the ones still running (gateway/upkeep.py).
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("WEB_KEEPALIVE", "75"))
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None
# Access-log lines are redacted like the JSON logs: no key from a query string or header
# reaches them (portal/accesslog.py; a name, so reading this file imports nothing).
logger_class = "portal.accesslog.RedactingLogger"
# Gunicorn's control socket (a per-user file) is not used; several servers on one host
# would share it.
control_socket_disable = True

# Each open stream holds a client socket and a router socket (plus Redis and Postgres
# while it is admitted and settled): allow far more than the usual 1,024 descriptors.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
if _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))

# Prometheus multiprocess mode (infra/metrics.py): every worker writes its samples to
# this directory and a /metrics scrape of any worker sums them. Set here, in the master,
# so every worker inherits it; stale sample files are removed when the server starts.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join("/tmp", "portal-metrics-" + "".join(c if c.isalnum() else "_" for c in bind[0])),
)


def on_starting(server):
    import glob

    os.makedirs(_metrics_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(_metrics_dir, "*.db")):
        os.remove(stale)


def post_worker_init(worker):
    """Once a worker has loaded the application: import what the first /v1 request would,
    collect, and move every object alive now into the collector's permanent generation
    (gc.freeze). A full collection otherwise walks all of Django, DRF and the app each
    time (about 120,000 objects, 60-80 ms measured, during which every request this
    worker holds waits); afterwards, only what came later."""
    import gc

    from django.urls import get_resolver

    for path in ("/v1/chat/completions", "/v1/messages", "/v1/models", "/health"):
        get_resolver().resolve(path)  # imports the views and the gateway behind them

    gc.collect()
    gc.freeze()

    from infra import lifecycle

    lifecycle.worker_started(worker)


def worker_exit(server, worker):
    """The worker's loop has ended (stopped, or its graceful time is up): apps end and
    record what they still hold before the process exits."""
    from infra import lifecycle

    lifecycle.worker_exiting()

"""Gunicorn settings for the web process; the Dockerfile, docker-compose and bench/ all
run this file, so production serves what the benchmark measured (bench/run.py).

    gunicorn -c portal/gunicorn.py portal.wsgi:application

gevent workers (portal/webworker.py: gevent's pywsgi server with idle and slow-header
timeouts): each request is a greenlet, so a worker holds thousands of slow or
streaming requests at once (router calls, Redis and Postgres all yield while they
wait); two workers use both cores of a small machine. Under gevent, Postgres
connections come from a pool (portal/settings.py, DB_POOL_MAX_SIZE).

Environment (all optional): WEB_BIND (0.0.0.0:8000), WEB_WORKERS (2),
WEB_WORKER_CLASS (portal.webworker.GeventWorker; gunicorn's gevent or gthread also
work), WEB_WORKER_CONNECTIONS (2000 per worker, gevent), WEB_THREADS (4, gthread only),
WEB_ACCESS_LOG ("-" = stdout; empty = none), WEB_TIMEOUT (330 s), WEB_KEEPALIVE (75 s:
how long a connection may wait idle for its next request), WEB_HEADER_TIMEOUT (10 s to
send a request head).

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
worker_class = os.environ.get("WEB_WORKER_CLASS", "portal.webworker.GeventWorker")
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "2000"))
threads = int(os.environ.get("WEB_THREADS", "4"))
backlog = 4096
# Streams may stay silent for the router read timeout (120 s) plus failover.
timeout = int(os.environ.get("WEB_TIMEOUT", "330"))
graceful_timeout = 30
keepalive = int(os.environ.get("WEB_KEEPALIVE", "75"))
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None
# Gunicorn's control socket (a per-user file) is not used; several servers on one host
# would share it.
control_socket_disable = True

# Each open stream holds a client socket and a router socket (plus Redis and Postgres
# while it is admitted and settled): allow far more than the usual 1,024 descriptors.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
if _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))

# Prometheus multiprocess mode (portal/metrics.py): every worker writes its samples to
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
    from portal.webworker import settle_heap

    settle_heap()

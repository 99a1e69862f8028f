"""Gunicorn settings for the web process; the Dockerfile, docker-compose and bench/ all
run this file, so production serves what the benchmark measured.

    gunicorn -c portal/gunicorn.py portal.wsgi:application

Environment (all optional): WEB_BIND (0.0.0.0:8000), WEB_WORKERS (2),
WEB_WORKER_CLASS (gevent), WEB_WORKER_CONNECTIONS (2000 per worker, gevent),
WEB_THREADS (4, gthread only), WEB_ACCESS_LOG ("-" = stdout; empty = none),
WEB_TIMEOUT (330 s), WEB_KEEPALIVE (5 s).

This file must not import Django or anything that opens a socket: the gevent worker
monkey-patches the standard library when it starts, after this file was read.
"""

import os

bind = [os.environ.get("WEB_BIND", "0.0.0.0:8000")]
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "2000"))
threads = int(os.environ.get("WEB_THREADS", "4"))
backlog = 4096
# Streams may stay silent for the router read timeout (120 s) plus failover.
timeout = int(os.environ.get("WEB_TIMEOUT", "330"))
graceful_timeout = 30
keepalive = int(os.environ.get("WEB_KEEPALIVE", "5"))
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None

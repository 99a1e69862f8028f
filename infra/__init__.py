"""The Portal's plumbing: what every app may import and what imports no app.

`faststate` (the Redis client, or an in-process stand-in) and `fastkeys` (every
fast-state key name); `respclient` (a pooled Redis client for threads) and `respmux`
(one multiplexed connection per gevent worker), the transports behind faststate's script
calls, with `redisendpoint` (where and how they connect, TLS included); `pgpool` (the
pooled Postgres backend), `metrics` (Prometheus), `lifecycle` (the web worker's start and
exit, for apps' per-process work), `pagination` (DRF list pages) and `adminactions`
(reason-asking admin actions). The project itself (settings, urls, errors, middleware) is
`portal/`. tests/test_architecture.py fails on an import from here into an app.
"""

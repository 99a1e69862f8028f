"""Django's PostgreSQL backend with a connection pool whose checkout check needs no round trip.

Used instead of `django.db.backends.postgresql` when the pool is on (the gevent web
server; portal/settings.py, DB_POOL_MAX_SIZE).
"""

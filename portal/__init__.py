"""The Portal's project package: settings, URLs, the WSGI app (plumbing is `infra/`).

Importing it imports nothing else: gunicorn's master reads portal/gunicorn.py before
the gevent worker monkey-patches the standard library, and a package import that
pulled in Celery or Django settings here would load them unpatched.
The Celery app is bound when Django starts (PortalConfig.ready) and found by
`celery -A portal` in portal/celery.py.
"""

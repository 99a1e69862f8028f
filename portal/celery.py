"""The Celery application, configured from Django settings (CELERY_* names).

    celery -A portal worker      # runs the tasks (metering.*, pools.*, …)
    celery -A portal beat        # sends the periodic ones: settings.CELERY_BEAT_SCHEDULE

Tasks live in each app's `tasks.py` and are found by `autodiscover_tasks`. With no
broker configured (no REDIS_URL) tasks run eagerly, in the calling process.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

"""portal/gunicorn.py is read by gunicorn's master before the gevent worker
monkey-patches the standard library: it must pull in neither Django settings nor Celery
(both would then run unpatched, and settings would not see gevent: no connection pool)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "PORTAL_ENV_FILE": "/nonexistent",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "true",
            **env,
        },
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_reading_the_server_config_loads_neither_settings_nor_celery():
    out = _run(
        "import sys, runpy; config = runpy.run_path('portal/gunicorn.py'); print(config['worker_class'], end=' '); "
        "print(sorted(m for m in ('portal.settings', 'celery', 'django.db', 'redis', 'psycopg') if m in sys.modules))"
    )
    assert out == "portal.gevent_worker.GeventWorker []"


def test_settings_loaded_after_patching_pool_database_connections():
    out = _run(
        "from gevent import monkey; monkey.patch_all(); import django; django.setup(); "
        "from django.conf import settings; import portal.settings as s; "
        "print(s._GEVENT, settings.DB_POOL_MAX_SIZE, settings.DATABASES['default']['ENGINE'])",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused",
    )
    assert out == "True 16 infra.pgpool"


def test_the_celery_app_is_current_once_django_has_started():
    out = _run(
        "import django; django.setup(); from celery import current_app; print(current_app.main)"
    )
    assert out == "portal"


def test_a_worker_freezes_the_loaded_application_out_of_full_collections():
    out = _run(
        "import django, gc, runpy, sys; django.setup(); post_worker_init = runpy.run_path('portal/gunicorn.py')['post_worker_init']; "
        "before = gc.get_freeze_count(); post_worker_init(None); "
        "print(before, gc.get_freeze_count() > 50_000, 'gateway.views' in sys.modules, 'gateway.flow' in sys.modules)"
    )
    assert out == "0 True True True"

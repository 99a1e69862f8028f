"""The environment every settings module reads: the optional `.env` file, DEBUG, whether
the gevent worker patched the standard library, and the helpers for secrets (required in
production, a fixed dev value with DEBUG on) and Celery beat entries. portal/settings.py
and portal/gateway_settings.py import from here; nothing else does.
"""

import contextlib
import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
# Runtime files (SQLite, collected static files, beat's schedule) go here by default; in a
# read-only tree (OSError) every path below can be set elsewhere.
with contextlib.suppress(OSError):
    VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
_env_file = env.str("PORTAL_ENV_FILE", default=str(BASE_DIR / ".env"))
if Path(_env_file).is_file():
    environ.Env.read_env(_env_file, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("PORTAL_TESTING", default="pytest" in sys.modules)
# The gevent worker (portal/gunicorn.py) patches the standard library before Django loads.
_GEVENT = "gevent.monkey" in sys.modules and sys.modules["gevent.monkey"].is_module_patched(
    "socket"
)

_missing: list[str] = []


def _secret(name: str, dev_default: str) -> str:
    """A secret: required in production, a fixed dev value when DEBUG is on."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG or TESTING:
        return dev_default
    _missing.append(name)
    return ""


def _every(seconds: int, task: str) -> dict:
    """A beat entry that expires before its next run: a stopped worker builds no backlog."""
    return {"task": task, "schedule": float(seconds), "options": {"expires": seconds * 0.9}}

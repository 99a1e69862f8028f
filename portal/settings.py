"""Settings, read from the environment (and an optional `.env` file).

Every value has a safe embedded default so the Portal runs on a fresh machine with
no services (SQLite under var/, an in-process fast-state stand-in, eager Celery,
the dev token signer, local keys). With DEBUG off, secrets must be set: the
process refuses to start and says which one is missing.
"""

import contextlib
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from portal.environment import (
    _GEVENT,
    BASE_DIR,
    DEBUG,
    TESTING,
    VAR_DIR,
    _every,
    _missing,
    _secret,
    env,
)

SECRET_KEY = _secret("SECRET_KEY", "dev-insecure-secret-key-do-not-use-in-production")
API_KEY_PEPPER = _secret("API_KEY_PEPPER", "dev-insecure-api-key-pepper")
ROUTER_KEY_ENCRYPTION_KEY = env.str("ROUTER_KEY_ENCRYPTION_KEY", default="")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_extensions",
    "portal",
    "accounts",
    "apikeys",
    "pools",
    "metering",
    "gateway",
    "ops",
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    # A request body arrives by its deadline or the request ends with 408 (gevent workers).
    "portal.middleware.BodyDeadlineMiddleware",
    # Answers CORS preflights itself (no view, no database) and decorates the answers.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # /v1 (API keys, no browser session): calls the view from here, past the browser app's
    # layers below (portal/middleware_v1.py).
    "portal.middleware_v1.V1ShortcutMiddleware",
    # Serves collected static files (admin, ops dashboard, API docs) from STATIC_ROOT.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Durable state -------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default="")
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Under gevent (portal/gunicorn.py) every request runs in its own greenlet, so a
    # per-thread persistent connection would be one connection per request: connections
    # come from a pool instead (Django's psycopg pool). infra.pgpool checks each one on
    # checkout without a round trip (psycopg_pool's own check sends a query each time).
    DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=16 if _GEVENT else 0)
    if DB_POOL_MAX_SIZE:
        if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
            DATABASES["default"]["ENGINE"] = "infra.pgpool"
            DATABASES["default"]["CONN_HEALTH_CHECKS"] = False  # infra.pgpool checks instead
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(2, DB_POOL_MAX_SIZE),
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": env.float("DB_POOL_TIMEOUT", default=30.0),
        }
# The request path's one write (request log + usage event) as a server-side prepared
# statement on the pooled server. Turn off behind a pooler in transaction mode that
# cannot keep prepared statements (older PgBouncer, Supabase's port 6543).
DB_PREPARED_STATEMENTS = env.bool("DB_PREPARED_STATEMENTS", default=True)
if not DATABASE_URL:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "portal.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Fast state (Redis) ----------------------------------------------------------
# Empty means the in-process stand-in (fakeredis): one process only.
REDIS_URL = env.str("REDIS_URL", default="")
FAST_STATE_PREFIX = env.str("FAST_STATE_PREFIX", default="portal:")
# Redis connections per process; callers beyond this wait for a free one (infra/faststate.py).
FAST_STATE_MAX_CONNECTIONS = env.int("FAST_STATE_MAX_CONNECTIONS", default=128)

# --- Celery ----------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Where `celery -A portal beat` keeps its schedule state (outside the source tree).
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILE", default=str(VAR_DIR / "celerybeat-schedule")
)

# --- Metering --------------------------------------------------------------------
# Usage events counted per rollup transaction, and transactions per task run.
METERING_ROLLUP_BATCH_SIZE = env.int("METERING_ROLLUP_BATCH_SIZE", default=5000)
METERING_ROLLUP_MAX_BATCHES = env.int("METERING_ROLLUP_MAX_BATCHES", default=200)
# An hour is billed (closed) this long after it ends: longer than any request takes to
# finish and commit (streams run up to ROUTER_READ_TIMEOUT between chunks). Later events still land, as adjustments.
METERING_LEDGER_LAG_SECONDS = env.int("METERING_LEDGER_LAG_SECONDS", default=900)
# How far before its previous run the last-used decoration re-reads request logs.
METERING_LAST_USED_LOOKBACK_SECONDS = env.int("METERING_LAST_USED_LOOKBACK_SECONDS", default=900)
# Request logs older than this are pruned (0: keep forever). Usage events are never pruned.
METERING_REQUEST_LOG_RETENTION_DAYS = env.int("METERING_REQUEST_LOG_RETENTION_DAYS", default=30)
# How often allowance counters are rebuilt from Postgres (0: only by `manage.py reconcile_quotas`).
METERING_RECONCILE_QUOTAS_SECONDS = env.int("METERING_RECONCILE_QUOTAS_SECONDS", default=3600)


# How often pending usage events are rolled up into hour and day buckets.
METERING_ROLLUP_SECONDS = env.int("METERING_ROLLUP_SECONDS", default=60)

CELERY_BEAT_SCHEDULE = {
    "metering.rollup_usage": _every(METERING_ROLLUP_SECONDS, "metering.rollup_usage"),
    "metering.touch_keys_last_used": _every(60, "metering.touch_keys_last_used"),
    "metering.post_ledger": _every(300, "metering.post_ledger"),
    "metering.close_billing_periods": _every(300, "metering.close_billing_periods"),
    "metering.prune_request_logs": _every(3600, "metering.prune_request_logs"),
}
if METERING_RECONCILE_QUOTAS_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["metering.reconcile_quotas"] = _every(
        METERING_RECONCILE_QUOTAS_SECONDS, "metering.reconcile_quotas"
    )

# The request path's usage write (request log + usage event) waits at most this long for
# Postgres (a pooled connection, then the statement's answer); past it, or with Postgres
# down, the record goes to the usage spool and the answer is not held (metering/spool.py).
USAGE_WRITE_TIMEOUT_SECONDS = env.float("USAGE_WRITE_TIMEOUT_SECONDS", default=2.5)
# On the gevent server, the usage writes of requests that end while another is being written
# go together in one pipeline once it is done (metering/groupcommit.py); each request still
# waits for its own record's commit. False: one statement per request.
USAGE_GROUP_COMMIT = env.bool("USAGE_GROUP_COMMIT", default=True)
# After a failed usage write, records go straight to the spool this long before Postgres is
# tried again (and spool replays wait as long after a failed one).
USAGE_WRITE_BACKOFF_SECONDS = env.float("USAGE_WRITE_BACKOFF_SECONDS", default=1.0)
# One append-only file per process: on local disk, and on a persistent volume where the
# machine or container may be replaced. fsync makes a spooled record survive a power loss.
USAGE_SPOOL_DIR = env.str("USAGE_SPOOL_DIR", default=str(VAR_DIR / "usage-spool"))
USAGE_SPOOL_FSYNC = env.bool("USAGE_SPOOL_FSYNC", default=False)
# Web processes replay the spool from their background loop; this task does it where a
# Celery worker shares the host (its files, and those of web processes that died).
USAGE_SPOOL_REPLAY_SECONDS = env.int("USAGE_SPOOL_REPLAY_SECONDS", default=30)
if USAGE_SPOOL_REPLAY_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["metering.replay_usage_spool"] = _every(
        USAGE_SPOOL_REPLAY_SECONDS, "metering.replay_usage_spool"
    )

# --- Ops -------------------------------------------------------------------------
# Router probes record health and feed the circuit breakers; the global pause flag is
# rebuilt in fast state from Postgres (fast state may lose it).
ROUTER_PROBE_INTERVAL_SECONDS = env.int("ROUTER_PROBE_INTERVAL_SECONDS", default=30)
CELERY_BEAT_SCHEDULE["pools.probe_routers"] = _every(
    ROUTER_PROBE_INTERVAL_SECONDS, "pools.probe_routers"
)
CELERY_BEAT_SCHEDULE["ops.sync_access_pause"] = _every(30, "ops.sync_access_pause")
# When set, GET /metrics needs `Authorization: Bearer <token>`. Without a token, /metrics
# answers 401 with DEBUG off unless METRICS_PUBLIC=true opens it (it names routers, pools
# and models); DEBUG and the test suite's own process leave it open by default.
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=DEBUG or TESTING)

# --- Dashboard authentication -----------------------------------------------------
AUTH_PROVIDER = env.str("AUTH_PROVIDER", default="dev")
if AUTH_PROVIDER not in {"clerk", "supabase", "dev"}:
    raise ImproperlyConfigured(
        f"AUTH_PROVIDER must be clerk, supabase or dev, not {AUTH_PROVIDER!r}"
    )
if AUTH_PROVIDER == "dev" and not (DEBUG or TESTING):
    raise ImproperlyConfigured(
        "AUTH_PROVIDER=dev signs its own tokens and is for development only; "
        "set AUTH_PROVIDER=clerk or supabase in production (or DEBUG=true locally)."
    )

CLERK_ISSUER = env.str("CLERK_ISSUER", default="")
CLERK_JWKS_URL = env.str("CLERK_JWKS_URL", default="")
CLERK_AUTHORIZED_PARTIES = env.list("CLERK_AUTHORIZED_PARTIES", default=[])
# Without it a Clerk token minted for any of the instance's apps would do (`azp` unchecked):
# required with DEBUG off (a warning under DEBUG, portal/checks.py).
if AUTH_PROVIDER == "clerk" and not CLERK_AUTHORIZED_PARTIES and not DEBUG:
    _missing.append("CLERK_AUTHORIZED_PARTIES")

SUPABASE_URL = env.str("SUPABASE_URL", default="").rstrip("/")
SUPABASE_JWT_SECRET = env.str("SUPABASE_JWT_SECRET", default="")
SUPABASE_JWT_AUDIENCE = env.str("SUPABASE_JWT_AUDIENCE", default="authenticated")
SUPABASE_ISSUER = env.str(
    "SUPABASE_ISSUER", default=f"{SUPABASE_URL}/auth/v1" if SUPABASE_URL else ""
)
SUPABASE_JWKS_URL = env.str(
    "SUPABASE_JWKS_URL",
    default=f"{SUPABASE_URL}/auth/v1/.well-known/jwks.json" if SUPABASE_URL else "",
)

if AUTH_PROVIDER == "clerk":
    if not CLERK_ISSUER:
        _missing.append("CLERK_ISSUER")
    if not CLERK_JWKS_URL and CLERK_ISSUER:
        CLERK_JWKS_URL = CLERK_ISSUER.rstrip("/") + "/.well-known/jwks.json"
if AUTH_PROVIDER == "supabase" and not SUPABASE_URL:
    _missing.append("SUPABASE_URL")

DEV_AUTH_SECRET = env.str("DEV_AUTH_SECRET", default=f"dev-auth:{SECRET_KEY}")
DEV_AUTH_ISSUER = "portal-dev"
DEV_AUTH_AUDIENCE = "portal"
JWT_LEEWAY_SECONDS = env.int("JWT_LEEWAY_SECONDS", default=30)
JWKS_CACHE_SECONDS = env.int("JWKS_CACHE_SECONDS", default=600)
JWKS_HTTP_TIMEOUT = env.float("JWKS_HTTP_TIMEOUT", default=3.0)

# --- API keys ----------------------------------------------------------------------
KEY_PROVIDER = env.str("KEY_PROVIDER", default="local")
if KEY_PROVIDER not in {"local", "unkey"}:
    raise ImproperlyConfigured(f"KEY_PROVIDER must be local or unkey, not {KEY_PROVIDER!r}")
UNKEY_ROOT_KEY = env.str("UNKEY_ROOT_KEY", default="")
UNKEY_API_ID = env.str("UNKEY_API_ID", default="")
UNKEY_BASE_URL = env.str("UNKEY_BASE_URL", default="https://api.unkey.com").rstrip("/")
# Hard timeout of every Unkey call (the SDK never retries): verification is on the request path.
UNKEY_TIMEOUT_MS = env.int("UNKEY_TIMEOUT_MS", default=2000)
# When Unkey does not answer: `closed` refuses (503 key_service_unavailable); `open` admits a
# key Unkey said VALID within the last UNKEY_FAIL_OPEN_SECONDS (the Portal's own checks still run).
UNKEY_FAILURE_MODE = env.str("UNKEY_FAILURE_MODE", default="closed")
if UNKEY_FAILURE_MODE not in {"closed", "open"}:
    raise ImproperlyConfigured(
        f"UNKEY_FAILURE_MODE must be closed or open, not {UNKEY_FAILURE_MODE!r}"
    )
UNKEY_FAIL_OPEN_SECONDS = env.int("UNKEY_FAIL_OPEN_SECONDS", default=300)
# Keys look like `<prefix>_<random>`.
UNKEY_KEY_PREFIX = env.str("UNKEY_KEY_PREFIX", default="ctr_live")
if not re.fullmatch(r"[A-Za-z0-9_]{1,16}", UNKEY_KEY_PREFIX):
    raise ImproperlyConfigured(
        "UNKEY_KEY_PREFIX must be 1-16 letters, digits or underscores (Unkey's rule)"
    )
# How often Unkey is brought in line with the Portal (plan limits, changes it missed while
# down); 0: only by `manage.py sync_unkey_keys --apply`.
UNKEY_SYNC_SECONDS = env.int("UNKEY_SYNC_SECONDS", default=300)
if KEY_PROVIDER == "unkey":
    for name, value in (("UNKEY_ROOT_KEY", UNKEY_ROOT_KEY), ("UNKEY_API_ID", UNKEY_API_ID)):
        if not value:
            _missing.append(name)
    if UNKEY_SYNC_SECONDS > 0:
        CELERY_BEAT_SCHEDULE["apikeys.sync_unkey_keys"] = _every(
            UNKEY_SYNC_SECONDS, "apikeys.sync_unkey_keys"
        )

# --- Gateway and request bodies: portal/gateway_settings.py ---------------------------
from portal.gateway_settings import *  # noqa: E402, F403  (the GATEWAY_*, ROUTER_*, BODY_* settings)
from portal.gateway_settings import GATEWAY_BEAT_SCHEDULE  # noqa: E402

CELERY_BEAT_SCHEDULE.update(GATEWAY_BEAT_SCHEDULE)

if _missing:
    raise ImproperlyConfigured(
        "Missing required settings: "
        + ", ".join(sorted(set(_missing)))
        + ". Set them in the environment or .env (see .env.example); "
        "DEBUG=true uses development defaults."
    )

# --- DRF and the API schema ------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.BearerJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.jsonbody.JSONParser"],  # depth, NUL, surrogates: 400
    "DEFAULT_PAGINATION_CLASS": "infra.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.errors.drf_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cortensor Portal API",
    "DESCRIPTION": "Dashboard API for the Cortensor Portal web app.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Swagger UI and ReDoc from drf-spectacular-sidecar (pinned with the package), served
    # as static files: the docs work without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ApiKeyStatusEnum": "apikeys.models.ApiKey.Status",
        "UserStatusEnum": "accounts.models.User.Status",
        "OrganizationStatusEnum": "accounts.models.Organization.Status",
    },
}

# --- The rest of Django ------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=1_048_576)

# --- Static files ------------------------------------------------------------------
# `manage.py collectstatic` gathers them into STATIC_ROOT (the Dockerfile and bin/serve
# run it); WhiteNoise serves them from the web process with far-future cache headers,
# under content-hashed names, gzip and brotli compressed. Under DEBUG the hashed names
# are not needed (runserver serves the sources). The test suite renders pages without a
# collectstatic run, so it keeps plain names.
STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
with contextlib.suppress(
    OSError
):  # WhiteNoise warns at every start about a missing folder (bin/dev never collects)
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- CORS, HTTPS and logs: portal/edge_settings.py ------------------------------------
from portal.edge_settings import *  # noqa: E402, F403

"""What the Portal says to browsers and proxies (CORS, HTTPS, security headers) and how it
logs, read from the environment like every other setting; imported by portal/settings.py.
"""

from django.core.exceptions import ImproperlyConfigured

from portal.environment import DEBUG, env

# --- CORS --------------------------------------------------------------------------
# Browsers may call the dashboard API (the web app on its own origin) and /v1 (SDKs
# running in a browser) from these origins; "*" allows any origin (keys and tokens are
# bearer headers, never cookies, so no credentials are allowed in either case).
_cors_origins = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_ALL_ORIGINS = "*" in _cors_origins
CORS_ALLOWED_ORIGINS = [origin for origin in _cors_origins if origin != "*"]
CORS_URLS_REGEX = r"^/(api/v1|v1|portal)/"
CORS_ALLOW_CREDENTIALS = False
CORS_PREFLIGHT_MAX_AGE = env.int("CORS_PREFLIGHT_MAX_AGE", default=86400)
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "user-agent",
    "x-api-key",
    "x-request-id",
    "openai-organization",
    "openai-project",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    # The official SDKs add x-stainless-* headers whose set changes between releases;
    # "*" covers them (it never covers `authorization`, hence the explicit list).
    "*",
)
CORS_EXPOSE_HEADERS = (
    "x-request-id",
    "request-id",
    "retry-after",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
)

# --- HTTPS -------------------------------------------------------------------------
# Behind a proxy that terminates TLS: BEHIND_TLS_PROXY=true trusts its
# X-Forwarded-Proto, SECURE_SSL_REDIRECT=true sends plain-HTTP visitors to https (the
# probes stay reachable over plain HTTP for load balancers), SECURE_HSTS_SECONDS tells
# browsers to use https only.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
# System check ids to silence, e.g. security.W021 when the domain is not to be preloaded.
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])

# JSON lines with the request id (portal/logs.py) unless DEBUG; LOG_FORMAT=plain|json overrides.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "portal.logs.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "portal.logs.JsonFormatter"},
        "plain": {"()": "portal.logs.PlainFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Through the root handler only (Django's own DEBUG console handler would print twice).
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "httpx": {
            "level": "WARNING"
        },  # the Unkey SDK's client: one INFO line per key check otherwise
    },
}

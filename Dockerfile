# Cortensor Portal: one image for web (gunicorn), worker and beat (celery),
# migrations and the router simulator; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    PORTAL_ENV_FILE=/nonexistent \
    STATIC_ROOT=/app/var/static

WORKDIR /app

RUN groupadd --system portal \
    && useradd --system --gid portal --home-dir /app --no-create-home --shell /usr/sbin/nologin portal

COPY . .
RUN pip install .

# collectstatic only imports settings; the development defaults are enough for it
# and never reach the running container.
RUN DEBUG=true python manage.py collectstatic --noinput \
    && mkdir -p /app/var/usage-spool \
    && chown -R portal:portal /app/var

USER portal
EXPOSE 8000

# gunicorn with gevent workers, as measured by bench/run.py; WEB_* variables tune it
# (portal/gunicorn.py).
CMD ["gunicorn", "-c", "portal/gunicorn.py", "portal.wsgi:application"]

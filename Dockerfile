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
RUN pip install . gunicorn

# collectstatic only imports settings; the development defaults are enough for it
# and never reach the running container.
RUN DEBUG=true python manage.py collectstatic --noinput \
    && mkdir -p /app/var \
    && chown -R portal:portal /app/var

USER portal
EXPOSE 8000

CMD ["gunicorn", "portal.wsgi:application", \
     "--bind", "0.0.0.0:8000", \
     "--worker-class", "gthread", "--threads", "4", \
     "--timeout", "330", "--graceful-timeout", "30", \
     "--access-logfile", "-"]

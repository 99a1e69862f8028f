"""Celery tasks of the ops app (thin wrappers around services)."""

from celery import shared_task

from ops.services import access_pause_sync


@shared_task(name="ops.sync_access_pause", ignore_result=True)
def sync_access_pause(**kwargs) -> bool:
    """Beat: rebuild the global pause flag in fast state from Postgres (Redis may have lost it)."""
    return access_pause_sync()

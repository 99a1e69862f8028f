"""Durable watermarks of the scheduled jobs (`metering_cursors`)."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q

from metering.models import MeteringCursor


def cursor_read(*, name: str) -> MeteringCursor:
    """The cursor `name`, empty (no position, never run) if it was never advanced."""
    return MeteringCursor.objects.filter(name=name).first() or MeteringCursor(name=name)


def cursor_advance(*, name: str, position: datetime | None, ran_at: datetime) -> None:
    """Move the cursor forward only: a slower, older run finishing last never moves it back."""
    try:
        with transaction.atomic():
            MeteringCursor.objects.create(name=name, position=position, last_run_at=ran_at)
            return
    except IntegrityError:
        pass
    if position is not None:
        MeteringCursor.objects.filter(
            Q(position__isnull=True) | Q(position__lt=position), name=name
        ).update(position=position)
    MeteringCursor.objects.filter(
        Q(last_run_at__isnull=True) | Q(last_run_at__lt=ran_at), name=name
    ).update(last_run_at=ran_at)

"""What the metering commands share: time and org arguments, and a progress bar on stderr."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.core.management.base import CommandError
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import Organization


def parse_when(value: str, *, name: str) -> datetime:
    """An ISO 8601 date or datetime; without an offset it is UTC."""
    try:
        at = parse_datetime(value)
        if at is None:
            day = parse_date(value)
            at = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        at = None
    if at is None:
        raise CommandError(f"--{name}: {value!r} is not an ISO 8601 date or datetime")
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def resolve_org(value: str | None) -> Organization | None:
    """An org by id or slug."""
    if not value:
        return None
    try:
        org = Organization.objects.filter(pk=uuid.UUID(value)).first()
    except ValueError:
        org = Organization.objects.filter(slug=value).first()
    if org is None:
        raise CommandError(f"--org: no organization {value!r}")
    return org


class Progress:
    """A one-line bar on stderr, drawn when stderr is a terminal or `--progress` asks for it."""

    WIDTH = 30

    def __init__(self, *, stream, total: int, label: str, enabled: bool | None = None):
        self.stream = stream
        self.total = max(total, 0)
        self.label = label
        self.done = 0
        if enabled is None:
            isatty = getattr(stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled

    def advance(self, step: int = 1, note: object = "") -> None:
        self.done += step
        if not self.enabled:
            return
        share = self.done / self.total if self.total else 1.0
        filled = min(int(share * self.WIDTH), self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {note}", ending="")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("")

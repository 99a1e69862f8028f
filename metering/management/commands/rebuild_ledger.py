"""`manage.py rebuild_ledger --period ID|DATE [--org] [--dry-run]`: recompute a billing period's usage charges.

For every closed hour of the period, compares the ledger with the usage events and
posts the difference as an adjustment. Never deletes or edits an entry; re-running
finds nothing left to post; safe beside the scheduled posting (idempotency keys).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.services import PERIOD_LENGTH
from metering.buckets import iso
from metering.ledger import PostingSummary, ledger_post_range
from metering.management.cli import Progress, parse_when, resolve_org
from metering.models import BillingPeriod, UsageEvent
from metering.periods import period_bounds


def _targets(period: str, org_id: UUID | None) -> list[tuple[UUID, datetime, datetime]]:
    """(org, start, end) of the periods named: one period by id, or each org's period holding a date."""
    if period.isdigit():
        row = BillingPeriod.objects.filter(pk=int(period)).first()
        if row is None or (org_id is not None and row.org_id != org_id):
            raise CommandError(f"--period: no billing period {period}")
        return [(row.org_id, row.start, row.end)]
    at = parse_when(period, name="period")
    rows = BillingPeriod.objects.filter(start__lte=at, end__gt=at)
    events = UsageEvent.objects.filter(
        created_at__gte=at - PERIOD_LENGTH, created_at__lt=at + PERIOD_LENGTH
    )
    if org_id is not None:
        rows, events = rows.filter(org_id=org_id), events.filter(org_id=org_id)
    orgs = set(rows.values_list("org_id", flat=True)) | set(
        events.values_list("org_id", flat=True).distinct()
    )
    return [(org, *period_bounds(org_id=org, at=at)) for org in sorted(orgs, key=str)]


class Command(BaseCommand):
    help = "Recompute a billing period's usage entries from the usage events and post adjustments for differences."

    def add_arguments(self, parser):
        parser.add_argument(
            "--period",
            required=True,
            help="a billing period id, or a date: each org's period holding it",
        )
        parser.add_argument("--org", help="one organization, by id or slug (default: all)")
        parser.add_argument(
            "--dry-run", action="store_true", help="report the adjustments; post nothing"
        )
        parser.add_argument(
            "--progress", action="store_true", help="draw the progress bar even when not a terminal"
        )

    def handle(self, *args, **options):
        org = resolve_org(options["org"])
        targets = _targets(options["period"], org.pk if org else None)
        dry_run = options["dry_run"]
        now = timezone.now()
        progress = Progress(
            stream=self.stderr,
            total=len(targets),
            label="rebuild_ledger",
            enabled=options["progress"] or None,
        )
        total = PostingSummary()
        for org_id, start, end in targets:
            summary = ledger_post_range(
                org_id=org_id, start=start, end=end, now=now, memo="rebuild_ledger", dry_run=dry_run
            )
            for name in (
                "hours",
                "org_hours",
                "usage_entries",
                "adjustments",
                "duplicates",
                "amount",
            ):
                setattr(total, name, getattr(total, name) + getattr(summary, name))
            if options["verbosity"] >= 2:
                for posting in summary.postings:
                    self.stdout.write(
                        f"  {posting.kind} {posting.idempotency_key}: {posting.delta.cost:+d} micro-USD, "
                        f"{posting.delta.requests:+d} requests"
                    )
            progress.advance(note=f"{org_id} [{iso(start)}, {iso(end)})")
        progress.close()
        if dry_run:
            self.stdout.write("Dry run: nothing was posted; the counts say what a run would post.")
        self.stdout.write(
            f"Ledger rebuild of {len(targets)} period(s): {total.hours} hour(s) checked, "
            f"{total.usage_entries} usage entries and {total.adjustments} adjustments posted, "
            f"net {total.amount:+d} micro-USD; {total.duplicates} already posted by another worker."
        )

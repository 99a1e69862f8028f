"""`manage.py reconcile_quotas [--org] [--dry-run]`: rebuild the allowance counters in Redis from Postgres.

Run after Redis lost its data (or to correct drift): every active org's counters
become its usage events in its current period. Requests in flight at that moment
lose their reservation, which loosens limits by at most those requests.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.selectors import active_subscriptions
from metering.management.cli import Progress, resolve_org
from metering.quotas import quota_reconcile


class Command(BaseCommand):
    help = "Set every active org's allowance counters in fast state to its durable usage in the current period."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="one organization, by id or slug (default: all)")
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would change; write nothing"
        )
        parser.add_argument(
            "--progress", action="store_true", help="draw the progress bar even when not a terminal"
        )

    def handle(self, *args, **options):
        org = resolve_org(options["org"])
        org_ids = [org.pk] if org else None
        subs = active_subscriptions()
        total = subs.filter(org_id=org.pk).count() if org else subs.count()
        progress = Progress(
            stream=self.stderr, total=total, label="reconcile", enabled=options["progress"] or None
        )
        summary = quota_reconcile(
            now=timezone.now(),
            org_ids=org_ids,
            dry_run=options["dry_run"],
            on_progress=progress.advance,
        )
        progress.close()
        if options["verbosity"] >= 2:
            for change in summary.changes:
                before = (
                    "missing"
                    if change.before is None
                    else f"r={change.before[0]} t={change.before[1]}"
                )
                self.stdout.write(
                    f"  {change.org_id}: {before} -> r={change.after[0]} t={change.after[1]}"
                )
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing was written; the counts say what a run would do.")
        self.stdout.write(
            f"Allowance counters of {summary.orgs} org(s): {summary.changed} set from Postgres, "
            f"{summary.unchanged} already right."
        )

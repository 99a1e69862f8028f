"""`manage.py backfill_rollups --start --end [--org] [--dry-run]`: recompute usage rollups from the events.

Replaces the hour buckets of [start, end) and the day buckets of the days they touch
with what the usage events add up to. Safe beside the scheduled rollup (it holds the
rollup lock exclusively one day at a time) and safe to re-run.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from metering.backfill import usage_rollup_rebuild
from metering.buckets import DAY, floor_day, floor_hour, iso, steps
from metering.management.cli import Progress, parse_when, resolve_org


class Command(BaseCommand):
    help = "Recompute hour and day usage rollups in [start, end) from the usage events (replace, not add)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--start", required=True, help="ISO 8601 date or datetime (UTC if no offset)"
        )
        parser.add_argument("--end", required=True, help="exclusive; ISO 8601 date or datetime")
        parser.add_argument("--org", help="one organization, by id or slug (default: all)")
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would change; write nothing"
        )
        parser.add_argument(
            "--progress", action="store_true", help="draw the progress bar even when not a terminal"
        )

    def handle(self, *args, **options):
        start = floor_hour(parse_when(options["start"], name="start"))
        end = floor_hour(parse_when(options["end"], name="end"))
        if start >= end:
            raise CommandError("--start must be before --end (whole hours)")
        org = resolve_org(options["org"])
        dry_run = options["dry_run"]
        days = list(steps(floor_day(start), end, DAY))
        progress = Progress(
            stream=self.stderr,
            total=len(days),
            label="backfill",
            enabled=options["progress"] or None,
        )
        summary = usage_rollup_rebuild(
            start=start,
            end=end,
            now=timezone.now(),
            org_id=org.pk if org else None,
            dry_run=dry_run,
            on_day=lambda day: progress.advance(note=day.date().isoformat()),
        )
        progress.close()
        if dry_run and options["verbosity"] >= 2:
            for (org_id, key_id, model, granularity, bucket), before, after in summary.changes:
                self.stdout.write(
                    f"  {granularity} {iso(bucket)} org={org_id} key={key_id} model={model}: {before} -> {after}"
                )
        if dry_run:
            self.stdout.write("Dry run: nothing was written; the counts say what a run would do.")
        self.stdout.write(
            f"Rollups {iso(start)} .. {iso(end)} ({summary.days} days, {org.slug if org else 'all orgs'}): "
            f"{summary.events_marked} pending events counted; buckets: {summary.buckets_created} created, "
            f"{summary.buckets_changed} changed, {summary.buckets_removed} removed, "
            f"{summary.buckets_unchanged} unchanged."
        )

"""`manage.py sync_unkey_keys [--apply] [--delete-revoked]`: bring Unkey in line with the Portal.

Dry run by default: prints every change it would make. The Portal's rows are the truth:
enabled (active keys only), name, external id (the org), meta (Portal key id, org, plan,
status), expiry and the plan's ratelimits. Keys the Portal created but no row knows
(a create whose transaction rolled back) are deleted; Portal keys Unkey lost are reported.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apikeys import unkey, unkey_sync


class Command(BaseCommand):
    help = "Reconcile Portal API key metadata with Unkey (dry run unless --apply)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--apply", action="store_true", help="make the changes (default: only print them)"
        )
        parser.add_argument(
            "--delete-revoked",
            action="store_true",
            help="delete keys revoked in the Portal from Unkey",
        )

    def handle(self, *args, **options):
        if not (settings.UNKEY_ROOT_KEY and settings.UNKEY_API_ID):
            raise CommandError("Set UNKEY_ROOT_KEY and UNKEY_API_ID first.")
        apply = options["apply"]
        try:
            outcomes = unkey_sync.reconcile(
                now=timezone.now(), apply=apply, delete_revoked=options["delete_revoked"]
            )
        except unkey.UnkeyCallFailed as exc:
            raise CommandError(f"Unkey did not answer: {exc}") from None
        for outcome in outcomes:
            self.stdout.write(
                outcome.change.describe() + (f"  FAILED: {outcome.error}" if outcome.error else "")
            )
        missing = sum(1 for o in outcomes if o.change.kind == "missing")
        failed = sum(1 for o in outcomes if o.error)
        changes = len(outcomes) - missing
        if apply:
            self.stdout.write(
                f"{changes - failed} changes made, {failed} failed; {missing} missing."
            )
        else:
            self.stdout.write(
                f"Dry run: {changes} changes would be made, {missing} missing; run with --apply to make them."
            )
        if failed:
            raise CommandError(f"{failed} changes failed")

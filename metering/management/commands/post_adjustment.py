"""`manage.py post_adjustment --org ORG --amount MICRO_USD --reason TEXT [--kind] [--idempotency-key]`.

Posts a credit or a manual adjustment to an organization's ledger, in its billing period
holding now, with an audit row (actor: system, the OS user in the row's `after`). The
rules (sign, reason, idempotency) are `metering.adjustments`': a rerun with the same key,
or without one on the same UTC day with the same org, kind, amount and reason, posts
nothing and says so.
"""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from metering.adjustments import AdjustmentError, adjustment_post, find_org, parse_amount


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Command(BaseCommand):
    help = (
        "Post a credit (the amount the org gets back, booked negative) or a signed adjustment, "
        "in integer micro-USD, to an organization's ledger; idempotent and audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="the organization, by id or slug")
        parser.add_argument(
            "--amount",
            required=True,
            help="integer micro-USD (1 USD = 1000000); a credit's is positive, an adjustment's signed",
        )
        parser.add_argument(
            "--reason",
            required=True,
            help="why; the organization reads it as the entry's memo in its ledger",
        )
        parser.add_argument("--kind", choices=["credit", "adjustment"], default="credit")
        parser.add_argument(
            "--idempotency-key",
            help="posts at most once per key and org (default: derived from org, kind, "
            "amount, reason and the UTC day)",
        )

    def handle(self, *args, **options):
        try:
            posted = adjustment_post(
                org=find_org(options["org"]),
                kind=options["kind"],
                amount=parse_amount(options["amount"]),
                reason=options["reason"],
                idempotency_key=options["idempotency_key"],
                actor=None,
                now=timezone.now(),
                source="manual: manage.py post_adjustment",
                audit_extra={"via": "manage.py post_adjustment", "os_user": _os_user()},
            )
        except AdjustmentError as err:
            flag = f"--{err.field.replace('_', '-')}: " if err.field else ""
            raise CommandError(f"{flag}{err.message}; nothing posted") from None
        self.stdout.write(posted.describe())

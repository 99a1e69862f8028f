"""`manage.py usage_spool_replay [--limit N]`: write the usage spool into Postgres now.

The spool holds the request records this host's processes could not write while Postgres
was unavailable (metering/spool.py). Web processes replay it by themselves once Postgres
is back; this is for an operator who wants it now, or for a host with no web process left.
Idempotent and safe beside running replays: each record counts once.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from metering import spool


class Command(BaseCommand):
    help = "Write the request records spooled while Postgres was unavailable into Postgres."

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit", type=int, help="start no new spool file after this many records"
        )

    def handle(self, *args, **options):
        replayed = spool.replay(limit=options["limit"])
        waiting = spool.pending()
        self.stdout.write(
            f"Replayed {replayed} usage record(s) from {spool.directory()}; {waiting} waiting."
        )
        if waiting:
            self.stdout.write(
                "Records still waiting are in files their processes are writing (they replay "
                "them), or Postgres is still unavailable."
            )

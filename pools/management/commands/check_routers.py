"""`manage.py check_routers`: probe every enabled router once, as the beat task does, and print a table."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from pools.health import routers_live, routers_probe


class Command(BaseCommand):
    help = (
        "Probe each enabled router's GET /api/v1/status and a one-token completion once, record "
        "its health, feed its circuit breaker and slow mark and print a table (STATUS up, SLOW "
        "or DOWN). Exit status 1 with --strict when a router is down."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--strict", action="store_true", help="Exit with status 1 if any router is down."
        )

    def handle(self, *args, strict: bool = False, **options):
        now = timezone.now()
        results = routers_probe(now=now)
        if not results:
            self.stdout.write("No enabled routers.")
            return
        live = routers_live([r.router_id for r in results], now_ms=int(now.timestamp() * 1000))
        header = ("POOL", "ROUTER", "URL", "STATUS", "LATENCY", "FAILS", "BREAKER", "IN-FLIGHT")
        rows = [
            (
                r.pool,
                r.name,
                r.base_url,  # never credentials: clean_base_url refuses them
                ("SLOW" if r.slow else "up") if r.ok else "DOWN",
                f"{r.latency_ms} ms",
                str(r.consecutive_failures),
                live[r.router_id].breaker if r.router_id in live else r.breaker,
                str(live[r.router_id].inflight) if r.router_id in live else "?",
            )
            for r in results
        ]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            self.stdout.write(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        down = sum(not r.ok for r in results)
        slow = sum(r.ok and r.slow for r in results)
        self.stdout.write(
            f"{len(results) - down} up, {down} down" + (f" ({slow} slow)" if slow else "")
        )
        if strict and down:
            raise CommandError(f"{down} router(s) down")

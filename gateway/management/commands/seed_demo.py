"""`manage.py seed_demo`: plans, models, a pool per family with routers, a demo org and key."""

import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from gateway.demo import DEFAULT_ROUTER_URLS, seed_demo


class Command(BaseCommand):
    help = "Create the demo catalog, pools and routers, the demo org and a fresh demo key."

    def add_arguments(self, parser):
        parser.add_argument(
            "--router-url",
            action="append",
            dest="router_urls",
            help=f"A router base URL (repeatable). Default: {', '.join(DEFAULT_ROUTER_URLS)} (simulators).",
        )
        parser.add_argument("--router-key", default="", help="The routers' API key (sealed at rest).")
        parser.add_argument("--json", action="store_true", help="End with one JSON line: org_id, api_key, models.")

    def handle(self, *args, router_urls, router_key, json: bool, **options):
        demo = seed_demo(router_urls=router_urls or list(DEFAULT_ROUTER_URLS), router_key=router_key, now=timezone.now())
        if json:
            self.stdout.write(_json({"org_id": demo.org_id, "api_key": demo.api_key, "models": demo.models}))
            return
        self.stdout.write(f"Demo org {demo.org_id}; models: {', '.join(demo.models)}")
        self.stdout.write("Demo API key (shown once):")
        self.stdout.write(demo.api_key)


def _json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))

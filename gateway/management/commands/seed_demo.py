"""`manage.py seed_demo`: plans, models, a pool per family with routers, a demo org and key."""

import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.utils import timezone

from gateway.demo import DEFAULT_ROUTER_URLS, DemoOwnerError, seed_demo


class Command(BaseCommand):
    help = "Create the demo catalog, pools and routers, the demo org and a fresh demo key."

    def add_arguments(self, parser):
        parser.add_argument(
            "--router-url",
            action="append",
            dest="router_urls",
            help=f"A router base URL (repeatable). Default: {', '.join(DEFAULT_ROUTER_URLS)} (simulators).",
        )
        parser.add_argument(
            "--router-key", default="", help="The routers' API key (sealed at rest)."
        )
        parser.add_argument(
            "--owner-identity",
            default="",
            metavar="SUBJECT",
            help="Also make this user an owner of the demo org: their JWT `sub` at AUTH_PROVIDER "
            "(a Clerk user id, a Supabase user uuid), created if they never signed in.",
        )
        parser.add_argument(
            "--owner-email",
            default="",
            metavar="EMAIL",
            help="With --owner-identity: the new user's email. Alone: the AUTH_PROVIDER user with this "
            "email (with AUTH_PROVIDER=dev, the user `mint_token EMAIL` signs in as).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="End with one JSON line: org_id, api_key, models, revoked_key_ids, revoked_keys, owner.",
        )

    def handle(
        self, *args, router_urls, router_key, owner_identity, owner_email, json: bool, **options
    ):
        owner_identity, owner_email = owner_identity.strip(), owner_email.strip()
        if owner_email:
            try:
                validate_email(owner_email)
            except ValidationError:
                raise CommandError(f"{owner_email!r} is not an email address.") from None
        try:
            demo = seed_demo(
                router_urls=router_urls or list(DEFAULT_ROUTER_URLS),
                router_key=router_key,
                now=timezone.now(),
                owner_provider=settings.AUTH_PROVIDER,
                owner_subject=owner_identity,
                owner_email=owner_email,
            )
        except DemoOwnerError as exc:
            raise CommandError(str(exc)) from None
        owner = demo.owner
        if json:
            self.stdout.write(
                _json(
                    {
                        "org_id": demo.org_id,
                        "api_key": demo.api_key,
                        "models": demo.models,
                        "revoked_key_ids": [key.id for key in demo.revoked_keys],
                        "revoked_keys": [key.masked for key in demo.revoked_keys],
                        "owner": None
                        if owner is None
                        else {
                            "user_id": str(owner.pk),
                            "auth_provider": owner.auth_provider,
                            "subject": owner.subject,
                            "email": owner.email,
                        },
                    }
                )
            )
            return
        self.stdout.write(f"Demo org {demo.org_id}; models: {', '.join(demo.models)}")
        if owner is not None:
            self.stdout.write(
                f"Owner: {owner.auth_provider} user {owner.subject} ({owner.email or 'no email'})"
            )
        for key in demo.revoked_keys:
            self.stdout.write(f"Revoked the previous demo key {key.masked} ({key.id}).")
        self.stdout.write("Demo API key (shown once):")
        self.stdout.write(demo.api_key)


def _json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))

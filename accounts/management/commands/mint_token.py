"""`manage.py mint_token EMAIL`: a dashboard bearer token from the dev signer."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.signing import mint_dev_token


class Command(BaseCommand):
    help = "Mint a dashboard bearer token for EMAIL (AUTH_PROVIDER=dev only). The token is the last line."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="", help="Display name claim.")
        parser.add_argument(
            "--subject", default="", help="The `sub` claim; defaults to dev|<email>."
        )
        parser.add_argument(
            "--ttl", type=int, default=3600, help="Lifetime in seconds (default 3600)."
        )

    def handle(self, *args, email, name, subject, ttl, **options):
        if settings.AUTH_PROVIDER != "dev":
            raise CommandError(
                f"AUTH_PROVIDER is {settings.AUTH_PROVIDER!r}; dev tokens are only accepted with AUTH_PROVIDER=dev."
            )
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"{email!r} is not an email address.") from None
        if ttl <= 0:
            raise CommandError("--ttl must be a positive number of seconds.")
        # The same email always maps to the same user unless a subject is given.
        subject = subject or f"dev|{email.lower()}"
        token = mint_dev_token(subject=subject, email=email, name=name, ttl_seconds=ttl)
        self.stdout.write(f"Dev token for {email} (sub={subject}), valid for {ttl} seconds.")
        self.stdout.write("Send it as 'Authorization: Bearer <token>':")
        self.stdout.write(token)

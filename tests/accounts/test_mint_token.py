"""`manage.py mint_token`: dev tokens the dashboard API accepts."""

from __future__ import annotations

from io import StringIO

import jwt
import pytest
from django.core.management import CommandError, call_command

from accounts.tokens import verify_dashboard_token


def mint(*args: str) -> list[str]:
    out = StringIO()
    call_command("mint_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_last_line_is_a_token_for_the_email(dev):
    lines = mint("Ann@Example.com", "--name", "Ann")

    identity = verify_dashboard_token(lines[-1])
    assert identity.provider == "dev"
    assert identity.email == "Ann@Example.com"
    assert identity.name == "Ann"
    assert len(lines) > 1, "an explanation precedes the token"


def test_subject_is_stable_per_email(dev):
    first = verify_dashboard_token(mint("ann@example.com")[-1])
    second = verify_dashboard_token(mint("ANN@example.com")[-1])

    assert first.subject == second.subject == "dev|ann@example.com"


def test_explicit_subject(dev):
    assert (
        verify_dashboard_token(mint("ann@example.com", "--subject", "user_42")[-1]).subject
        == "user_42"
    )


def test_ttl_sets_expiry(dev):
    claims = jwt.decode(
        mint("ann@example.com", "--ttl", "60")[-1], options={"verify_signature": False}
    )

    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("provider", ["clerk", "supabase"])
def test_refused_unless_the_dev_provider_is_on(settings, provider):
    settings.AUTH_PROVIDER = provider

    with pytest.raises(CommandError, match="AUTH_PROVIDER=dev"):
        mint("ann@example.com")


@pytest.mark.parametrize("args", [["not-an-email"], ["ann@example.com", "--ttl", "0"]])
def test_bad_arguments(dev, args):
    with pytest.raises(CommandError):
        mint(*args)

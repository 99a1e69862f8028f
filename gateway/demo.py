"""The demo catalog and account that `manage.py seed_demo` creates (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from accounts.models import OrganizationMember, Plan, User
from accounts.selectors import users_with_email
from accounts.services import Identity, org_change_plan, org_member_add, user_get_or_provision
from apikeys.models import ApiKey
from apikeys.services import api_key_create, api_key_revoke
from pools import services as pool_services
from pools.models import Model, Route, Router, RouterPool

DEFAULT_ROUTER_URLS = ("http://127.0.0.1:9101", "http://127.0.0.1:9102")
DEMO_EMAIL = "demo@example.com"
DEMO_KEY_NAME = "demo"

# (public name, display name, pool, session id, template, prices in micro-USD per Mtok, aliases)
CATALOG = [
    (
        "gemma-4-26b",
        "Gemma 4 26B",
        "gemma4",
        11,
        "gemma",
        (100_000, 400_000),
        ("default", "gemma4"),
    ),
    ("oss-20b", "OSS 20B", "oss-20b", 21, "chatml", (50_000, 200_000), ()),
    ("oss-120b", "OSS 120B", "oss-120b", 31, "chatml", (150_000, 600_000), ()),
    ("qwen-3-32b", "Qwen 3 32B", "qwen", 41, "chatml", (80_000, 320_000), ("qwen",)),
]


@dataclass(frozen=True)
class RevokedKey:
    id: str
    masked: str  # prefix…last4


@dataclass(frozen=True)
class Demo:
    org_id: str
    api_key: str
    models: list[str]
    revoked_keys: list[RevokedKey] = field(default_factory=list)
    owner: User | None = None


class DemoOwnerError(ValueError):
    """The owner asked for cannot be found or made."""


def _ensure_catalog(*, router_urls: list[str], router_key: str) -> None:
    for name, display, pool_name, session, template, (price_in, price_out), aliases in CATALOG:
        pool = RouterPool.objects.filter(name=pool_name).first() or pool_services.pool_create(
            name=pool_name
        )
        for index, url in enumerate(router_urls):
            router_name = f"router-{index + 1}"
            router = Router.objects.filter(pool=pool, name=router_name).first()
            if router is None:
                pool_services.router_create(
                    pool=pool, name=router_name, base_url=url, api_key=router_key
                )
            elif router.base_url != url:
                pool_services.router_set_url(router=router, base_url=url)
                pool_services.router_set_key(router=router, api_key=router_key)
        extra = Router.objects.filter(pool=pool, enabled=True).exclude(
            name__in=[f"router-{i + 1}" for i in range(len(router_urls))]
        )
        for router in extra:
            pool_services.router_set_enabled(router=router, enabled=False)
        model = Model.objects.filter(name=name).first() or pool_services.model_create(
            name=name,
            display_name=display,
            input_price_per_mtok=price_in,
            output_price_per_mtok=price_out,
            aliases=aliases,
        )
        if not Route.objects.filter(model=model, pool=pool).exists():
            pool_services.route_create(
                model=model, pool=pool, session_id=session, template=template
            )


def demo_owner(*, provider: str, subject: str = "", email: str = "", now: datetime) -> User:
    """The user to own the demo org, as `provider` would sign them in.

    By subject (the JWT `sub`: a Clerk user id, a Supabase user uuid): that user, created
    if they never signed in, so their first sign-in finds the demo org. By email alone:
    the one user of `provider` with that email; with the dev signer, the user
    `mint_token EMAIL` signs in as (subject `dev|email`), created if missing. Clerk and
    Supabase subjects cannot be guessed from an email, so they need a sign-in first.
    """
    if subject:
        return user_get_or_provision(
            identity=Identity(provider=provider, subject=subject, email=email), now=now
        )
    found = users_with_email(provider=provider, email=email)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise DemoOwnerError(
            f"{len(found)} {provider} users have the email {email}: name one with --owner-identity."
        )
    if provider == "dev":
        return user_get_or_provision(
            identity=Identity(provider="dev", subject=f"dev|{email.lower()}", email=email), now=now
        )
    raise DemoOwnerError(
        f"No {provider} user with the email {email} has signed in yet: sign in once, or pass "
        f"--owner-identity with the {provider} user id (the JWT `sub`)."
    )


def seed_demo(
    *,
    router_urls: list[str],
    router_key: str,
    now: datetime,
    owner_provider: str = "dev",
    owner_subject: str = "",
    owner_email: str = "",
) -> Demo:
    """The demo catalog, org (owned by the demo user, and by the given owner if any) and a
    fresh demo key; the previous demo keys are revoked and returned. Idempotent otherwise."""
    owner = None
    if owner_subject or owner_email:  # first, so a bad owner changes nothing
        owner = demo_owner(
            provider=owner_provider, subject=owner_subject, email=owner_email, now=now
        )
    _ensure_catalog(router_urls=router_urls, router_key=router_key)
    user = user_get_or_provision(
        identity=Identity(
            provider="dev", subject=f"dev|{DEMO_EMAIL}", email=DEMO_EMAIL, name="Demo User"
        ),
        now=now,
    )
    org = user.personal_org
    org_change_plan(org=org, plan=Plan.objects.get(code="pro"), actor=None, now=now, reason="demo")
    if owner is not None:
        org_member_add(
            org=org,
            user=owner,
            role=OrganizationMember.Role.OWNER,
            actor=None,
            now=now,
            reason="seed_demo",
        )
    revoked = []
    for old in ApiKey.objects.filter(
        org=org, name=DEMO_KEY_NAME, status=ApiKey.Status.ACTIVE
    ).order_by("created_at"):
        api_key_revoke(key=old, actor=None, now=now, reason="replaced by seed_demo")
        revoked.append(RevokedKey(id=str(old.pk), masked=old.masked))
    issued = api_key_create(org=org, created_by=user, name=DEMO_KEY_NAME, now=now)
    models = sorted(
        Model.objects.filter(status=Model.Status.ENABLED).values_list("name", flat=True)
    )
    return Demo(
        org_id=str(org.pk),
        api_key=issued.plaintext,
        models=models,
        revoked_keys=revoked,
        owner=owner,
    )

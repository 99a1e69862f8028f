"""System checks for a production deployment (`manage.py check --deploy`)."""

from pathlib import Path

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.staticfiles, deploy=True)
def static_files_collected(app_configs, **kwargs):
    """Hashed static names need the manifest collectstatic writes; without it every admin
    page fails to render."""
    backend = settings.STORAGES["staticfiles"]["BACKEND"]
    if "Manifest" not in backend or (Path(settings.STATIC_ROOT) / "staticfiles.json").is_file():
        return []
    return [
        Warning(
            f"Static files were not collected into STATIC_ROOT ({settings.STATIC_ROOT}).",
            hint="Run `manage.py collectstatic --noinput` before starting the web server.",
            id="portal.W001",
        )
    ]


@register(Tags.security)
def clerk_authorized_parties(app_configs, **kwargs):
    """Clerk without CLERK_AUTHORIZED_PARTIES accepts a token minted for any app of the
    instance (`azp` unchecked). Settings refuse it with DEBUG off; under DEBUG it warns."""
    if settings.AUTH_PROVIDER != "clerk" or settings.CLERK_AUTHORIZED_PARTIES:
        return []
    return [
        Warning(
            "AUTH_PROVIDER=clerk without CLERK_AUTHORIZED_PARTIES: the token's `azp` is not checked.",
            hint="Set CLERK_AUTHORIZED_PARTIES to the web app's origins (required with DEBUG off).",
            id="portal.W002",
        )
    ]

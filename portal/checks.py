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

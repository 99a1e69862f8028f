from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal plumbing"

    def ready(self) -> None:
        # The Celery app, set as current before any task is sent, so `shared_task`
        # everywhere uses it (the usual `from .celery import app` in __init__.py,
        # done here instead: see portal/__init__.py).
        import portal.celery
        import portal.checks  # noqa: F401

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts, organizations and plans"

    def ready(self) -> None:
        from django.apps import apps

        from accounts import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from accounts.services import audit_record
        from infra.adminactions import provide

        # pools' admin audits plain catalog edits (aliases, routes, ...) but may not import
        # accounts: it asks for this (infra.adminactions.provided).
        provide(audit_record=audit_record)

        # Two kinds of user share the admin: customers (accounts.User, "Customer users") and
        # staff (Django's auth.User). Name the staff section for what it holds; an app label
        # is not part of any migration.
        apps.get_app_config("auth").verbose_name = "Staff accounts"

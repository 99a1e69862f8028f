from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts, organizations and plans"

    def ready(self) -> None:
        from django.apps import apps

        from accounts import schema  # noqa: F401  (registers the OpenAPI auth extension)

        # Two kinds of user share the admin: customers (accounts.User, "Customer users") and
        # staff (Django's auth.User). Name the staff section for what it holds; an app label
        # is not part of any migration.
        apps.get_app_config("auth").verbose_name = "Staff accounts"

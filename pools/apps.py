from django.apps import AppConfig


class PoolsConfig(AppConfig):
    name = "pools"
    verbose_name = "Models, router pools and routes"

    def ready(self) -> None:
        from infra.adminactions import provide
        from pools.catalogedits import alias_target

        # accounts' plan admin refuses a model access policy naming an alias (infra.adminactions).
        provide(model_alias_target=alias_target)

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self):
        # The controls and the usage column that accounts' and pools' admins offer, and the
        # key spend the keys API shows: they may not import ops or metering, so ops provides
        # them (infra.adminactions).
        from infra.adminactions import provide
        from metering.budgets import key_spend_between
        from ops import services
        from ops.admin import annotate_org_period_usage

        provide(
            model_disable=services.model_disable,
            model_enable=services.model_enable,
            pool_drain=services.pool_drain,
            pool_activate=services.pool_activate,
            pool_disable=services.pool_disable,
            router_disable=services.router_disable,
            router_enable=services.router_enable,
            router_reset_breaker=services.router_reset_breaker,
            annotate_org_period_usage=annotate_org_period_usage,
            key_spend_between=key_spend_between,  # a key's spend (apikeys.controls)
        )

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Inference gateway"

    def ready(self):
        from gateway import upkeep

        upkeep.register()

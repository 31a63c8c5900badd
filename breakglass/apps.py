from django.apps import AppConfig


class BreakglassConfig(AppConfig):
    name = "breakglass"
    verbose_name = "Break-glass access"

    def ready(self) -> None:
        from audit.models import Delivery
        from audit.outbox import register_channel
        from breakglass.connectors import send_to_connector

        register_channel(Delivery.Channel.CONNECTOR, send_to_connector)

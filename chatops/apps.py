"""Slack: alerts posted with Block Kit, and the buttons on them (approve, deny, not us)
answered through the same services as the pages."""
from django.apps import AppConfig


class ChatopsConfig(AppConfig):
    name = "chatops"
    verbose_name = "Slack"

    def ready(self) -> None:
        from audit.alerts import register_targets
        from audit.models import Delivery
        from audit.outbox import register_channel
        from chatops import alerts, checks  # noqa: F401 (checks register themselves)

        register_targets(alerts.slack_targets, Delivery.Channel.SLACK, alerts.render)
        register_channel(Delivery.Channel.SLACK, alerts.send)

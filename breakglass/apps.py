from django.apps import AppConfig


class BreakglassConfig(AppConfig):
    name = "breakglass"
    verbose_name = "Break-glass access"

    def ready(self) -> None:
        from accounts.rights import register_releasing_right
        from audit.models import Delivery
        from audit.outbox import register_channel, register_fanout
        from breakglass.models import group_and_grant_rights
        from breakglass.services.connectors import send_to_connector
        from breakglass.services.grants import GRANT_FANOUT, expand_grant_event

        register_channel(Delivery.Channel.CONNECTOR, send_to_connector)
        register_fanout(GRANT_FANOUT, expand_grant_event)
        register_releasing_right(group_and_grant_rights)
        from accounts.sso import CLAIM_HANDLERS
        from breakglass.services.claims import apply_claims

        if apply_claims not in CLAIM_HANDLERS:
            CLAIM_HANDLERS.append(apply_claims)

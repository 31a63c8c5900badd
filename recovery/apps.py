from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"
    verbose_name = "Quorum recovery"

    def ready(self) -> None:
        from accounts.rights import register_releasing_right
        from recovery.models import quorum_holder_rights

        register_releasing_right(quorum_holder_rights)

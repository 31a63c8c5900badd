from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"

    def ready(self) -> None:
        from accounts.rights import register_releasing_right
        from backups.models import website_manager_rights

        register_releasing_right(website_manager_rights)

from django.apps import AppConfig


class ScimConfig(AppConfig):
    name = "scim"
    verbose_name = "SCIM provisioning"

    def ready(self) -> None:
        from accounts.sso import ACCOUNT_LINKERS
        from scim.linking import directory_account_for

        if directory_account_for not in ACCOUNT_LINKERS:
            ACCOUNT_LINKERS.append(directory_account_for)

"""A django.contrib.auth group: grants carry real Django permissions."""

from accounts.models import User
from audit.outbox import DeliveryError
from breakglass.connectors.base import ConnectorProblem, Notice, Setting, Target


class DjangoGroupTarget(Target):
    SETTINGS = (Setting("django_group", "The name of the Django auth group whose membership "
                        "access gives.", store="field", required=True),)
    def _auth_group(self):
        auth_group = self.connector.django_group
        if auth_group is None:
            raise ConnectorProblem("no Django group is chosen for this connector")
        return auth_group

    def _user(self, username: str) -> User:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise DeliveryError("the user no longer exists", retryable=False)
        return user

    def grant(self, username: str, notice: Notice | None = None) -> str:
        auth_group = self._auth_group()
        self._user(username).groups.add(auth_group)
        return f"django-group:{auth_group.pk}:added"

    def revoke(self, username: str, notice: Notice | None = None) -> str:
        auth_group = self._auth_group()
        self._user(username).groups.remove(auth_group)
        return f"django-group:{auth_group.pk}:removed"

    def members(self) -> set[str]:
        return set(self._auth_group().user_set.values_list("username", flat=True))

    def check(self) -> str:
        auth_group = self._auth_group()
        return (f"Django group {auth_group.name!r} is ready: {auth_group.user_set.count()} "
                f"members, {auth_group.permissions.count()} permissions.")

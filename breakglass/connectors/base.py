"""What every connector kind provides. A target is the system a connector reaches: a
database role, a directory group, a Django auth group, a webhook receiver.

Targets speak in logins (the name a user has on the target: a database login, an LDAP uid or
DN), never in Breakglass users; breakglass/services/connectors.py maps one to the other."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from breakglass.models import Connector


@dataclass(frozen=True)
class Notice:
    """The grant event a call comes from, as the outbox stored it."""

    payload: dict
    body: bytes
    idempotency_key: str


@dataclass(frozen=True)
class Setting:
    """One setting a kind of connector takes (`manage.py create_connector --option
    key=value`, the admin form). `store` says where it lives on the Connector:
    "server_url", "bind_dn" or "bind_password" (encrypted at rest), "target" (target_name:
    the role or group DN), "options" (the JSON options, under `key`) or "field" (the model
    field named `key`)."""

    key: str
    help: str
    store: str = "options"
    required: bool = False
    kind: str = "text"  # text, bool or list (comma-separated)
    default: object = None
    choices: tuple[str, ...] = ()


@dataclass
class Settings:
    """A connector's settings, checked: where each one goes on the model."""

    target_name: str = ""
    secrets: dict[str, str] = field(default_factory=dict)  # server_url, bind_dn, bind_password
    options: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)


class Target(ABC):
    """One connector's target system. `grant` and `revoke` are idempotent (granting twice or
    revoking an absent member succeeds) and return what the target answered, in a few words;
    a failure raises audit.outbox.DeliveryError (retryable unless it cannot succeed, such as a
    login that does not exist). `members()` is the set of logins the target has now (None
    when it cannot say); `check()` answers in plain words whether the target is reachable
    with sufficient rights, or raises ConnectorProblem saying why not.

    A target may hold a connection open between calls; `close()` ends it. Use a target as a
    context manager to close it at the end."""

    # Mirroring kinds follow the access decision at send time; notifying kinds send the event.
    mirrors_access = True
    # The settings this kind takes, besides the common ones (breakglass/services/connectors.py).
    SETTINGS: tuple[Setting, ...] = ()

    def __init__(self, connector: Connector):
        self.connector = connector

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def login_key(self, login: str) -> str:
        """What makes two logins the same on this target (exact, unless the target matches
        them regardless of case, as a directory does)."""
        return login

    def close(self) -> None:
        """End any connection the target holds (none by default)."""
        return None

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        """Kind-specific checks across settings, after each was parsed; raise
        ConnectorProblem naming the setting. None by default."""
        return None

    @abstractmethod
    def grant(self, login: str, notice: Notice | None = None) -> str:
        """See the class docstring."""

    @abstractmethod
    def revoke(self, login: str, notice: Notice | None = None) -> str:
        """See the class docstring."""

    @abstractmethod
    def members(self) -> set[str] | None:
        """See the class docstring."""

    @abstractmethod
    def check(self) -> str:
        """See the class docstring."""


class ConnectorProblem(Exception):
    """Why a target cannot be used as configured, in words an operator can act on."""


def secret(connector: Connector, name: str) -> str:
    """A decrypted secret of the connector ("server_url", "bind_dn", "bind_password")."""
    from recovery.crypto import decrypt_field

    token = getattr(connector, f"{name}_encrypted")
    return decrypt_field(token) if token else ""

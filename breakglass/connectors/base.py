"""What every connector kind provides. A target is the system a connector reaches (a Django
auth group, a webhook receiver; database roles and directory groups next)."""

from abc import ABC, abstractmethod
from dataclasses import dataclass

from breakglass.models import Connector


@dataclass(frozen=True)
class Notice:
    """The grant event a call comes from, as the outbox stored it."""

    payload: dict
    body: bytes
    idempotency_key: str


class Target(ABC):
    """One connector's target system. `grant` and `revoke` are idempotent (granting twice or
    revoking an absent member succeeds) and return what the target answered, in a few words;
    a failure raises audit.outbox.DeliveryError so the outbox retries it. `members()` is what
    the target says now (None when it cannot say); `check()` answers in plain words whether
    it is reachable with sufficient rights, or raises ConnectorProblem saying why not."""

    # Mirroring kinds follow the access decision at send time; notifying kinds send the event.
    mirrors_access = True

    def __init__(self, connector: Connector):
        self.connector = connector

    @abstractmethod
    def grant(self, username: str, notice: Notice | None = None) -> str:
        """See the class docstring."""

    @abstractmethod
    def revoke(self, username: str, notice: Notice | None = None) -> str:
        """See the class docstring."""

    @abstractmethod
    def members(self) -> set[str] | None:
        """See the class docstring."""

    @abstractmethod
    def check(self) -> str:
        """See the class docstring."""


class ConnectorProblem(Exception):
    """Why a target cannot be used as configured, in words an operator can act on."""

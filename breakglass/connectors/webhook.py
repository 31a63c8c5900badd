"""A signed webhook: every grant event is POSTed to the operator's receiver, which acts on
it. It notifies rather than mirrors, and cannot say who its members are."""

from audit.outbox import DeliveryError, post_signed
from breakglass.connectors.base import ConnectorProblem, Notice, Setting, Settings, Target


class WebhookTarget(Target):
    mirrors_access = False
    SETTINGS = (Setting("url", "Where grant events are POSTed (https://...).", store="field",
                        required=True),)

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        url = settings.fields.get("url", "")
        if not url.lower().startswith(("https://", "http://")) or len(url) > 200:
            raise ConnectorProblem("url: give the receiver's https:// address (200 "
                                   "characters at most)")

    def _post(self, notice: Notice | None) -> str:
        if notice is None:
            raise DeliveryError("a webhook is only called with the grant event it reports",
                                retryable=False)
        return post_signed(self.connector.url, notice.body, self.connector.signing_secret(),
                           notice.idempotency_key)

    def grant(self, username: str, notice: Notice | None = None) -> str:
        return self._post(notice)

    def revoke(self, username: str, notice: Notice | None = None) -> str:
        return self._post(notice)

    def members(self) -> None:
        return None  # the receiver keeps its own list; reconciliation cannot compare it

    def check(self) -> str:
        if not self.connector.url.lower().startswith(("https://", "http://")):
            raise ConnectorProblem("the webhook address must start with https:// or http://")
        return (f"Grant events are POSTed to {self.connector.url}, signed with "
                "X-Breakglass-Signature (HMAC-SHA256).")

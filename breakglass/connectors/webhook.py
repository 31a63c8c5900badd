"""A webhook signed per Standard Webhooks: every grant event is POSTed to the operator's
receiver, which acts on it. It notifies rather than mirrors, and cannot say who its members are.

Signed as the alert webhooks are (audit/webhooks.py): `webhook-id` is the same on every retry of
a delivery, `webhook-timestamp` is the time of the attempt, `webhook-signature` is made with the
connector's secret. That secret is derived from SECRET_KEY (Connector.signing_secret, shown on
the admin page), never stored, so it is always in whsec_ form. Raising the connector's
secret_version gives it a new one; the one it replaced keeps signing next to it for
WEBHOOK_ROTATION_OVERLAP, counted from the change the connector's history records."""

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from audit.outbox import DeliveryError, post_json
from audit.webhooks import InvalidEndpoint, check_url, message_id, signature_headers
from breakglass.connectors.base import ConnectorProblem, Notice, Setting, Settings, Target
from breakglass.models import Connector

URL_LENGTH = Connector._meta.get_field("url").max_length


class WebhookTarget(Target):
    mirrors_access = False
    SETTINGS = (Setting("url", "Where grant events are POSTed (https://...).", store="field",
                        required=True),)

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        url = settings.fields.get("url", "")
        if len(url) > URL_LENGTH:
            raise ConnectorProblem(f"url: {URL_LENGTH} characters at most")
        try:
            check_url(url)
        except InvalidEndpoint as invalid:
            raise ConnectorProblem(f"url: {invalid}") from None

    def _post(self, notice: Notice | None) -> str:
        if notice is None:
            raise DeliveryError("a webhook is only called with the grant event it reports",
                                retryable=False)
        try:
            url = check_url(self.connector.url)
        except InvalidEndpoint as invalid:
            raise DeliveryError(f"the webhook address is refused: {invalid}",
                                retryable=False) from None
        now = timezone.now()
        headers = signature_headers(message_id(notice.idempotency_key), now, notice.body,
                                    signing_secrets(self.connector, now))
        return post_json(url, notice.body,
                         {**headers, "X-Breakglass-Delivery": notice.idempotency_key})

    def grant(self, username: str, notice: Notice | None = None) -> str:
        return self._post(notice)

    def revoke(self, username: str, notice: Notice | None = None) -> str:
        return self._post(notice)

    def members(self) -> None:
        return None  # the receiver keeps its own list; reconciliation cannot compare it

    def check(self) -> str:
        try:
            check_url(self.connector.url)
        except InvalidEndpoint as invalid:
            raise ConnectorProblem(f"the webhook address is refused: {invalid}") from None
        return (f"Grant events are POSTed to {self.connector.url}, signed per Standard "
                "Webhooks (webhook-id, webhook-timestamp, webhook-signature) with the secret "
                "shown on the connector's admin page.")


def signing_secrets(connector: Connector, now: datetime) -> list[str]:
    """The secrets in force: the current version's, and the one it replaced until
    WEBHOOK_ROTATION_OVERLAP after the change."""
    in_force = [connector.signing_secret()]
    replaced = _replaced_version(connector)
    if replaced is not None and now < replaced[1] + settings.WEBHOOK_ROTATION_OVERLAP:
        in_force.append(connector.signing_secret(replaced[0]))
    return in_force


def _replaced_version(connector: Connector) -> tuple[int, datetime] | None:
    """The secret version the current one replaced and when, read from the connector's
    history (each saved change has a row); None when the version never changed, or when no row
    says when it did (then only the current secret signs: never one the history cannot date)."""
    history = connector.history.order_by("-history_id")
    before = history.exclude(secret_version=connector.secret_version).first()
    if before is None:
        return None
    changed = history.filter(history_id__gt=before.history_id).last()
    if changed is None:
        return None
    return before.secret_version, changed.history_date

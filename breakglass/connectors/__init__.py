"""Provisioning: after every grant change, each enabled connector of the groups the grant
reaches is told, through the outbox (retried with backoff, dead-lettered and alerted like any
delivery; never inside the user's request).

Each kind of connector is one module here with one `Target` class (base.py): `grant(user)`,
`revoke(user)`, `members()` and `check()`. Kinds that mirror access (a Django auth group)
decide at send time from the access decision, so a late retry can never undo a later
revocation; kinds that notify (a webhook) send the event as it was recorded."""

import json

from django.db.models.expressions import RawSQL

from accounts.models import User
from audit.alerts import queue_message
from audit.models import AuditEvent, Delivery
from audit.outbox import DeliveryError
from breakglass.access import decide
from breakglass.connectors.base import Notice, Target
from breakglass.connectors.django_group import DjangoGroupTarget
from breakglass.connectors.webhook import WebhookTarget
from breakglass.models import Connector, Grant
from breakglass.sql import REACH_IDS_SQL

TARGETS: dict[str, type[Target]] = {
    Connector.Kind.DJANGO_GROUP: DjangoGroupTarget,
    Connector.Kind.WEBHOOK: WebhookTarget,
}


def target_for(connector: Connector) -> Target:
    return TARGETS[connector.kind](connector)


def provision(event: AuditEvent, grant: Grant, action: str) -> None:
    """Queue `action` ("grant" or "revoke") for every connector concerned, in the caller's
    transaction."""
    reached = RawSQL(REACH_IDS_SQL, [grant.group_id])  # noqa: S611 (constant SQL, bound id)
    connectors = Connector.objects.filter(group_id__in=reached, enabled=True)
    for connector in connectors.select_related("group"):
        body = json.dumps({
            "action": action, "event": event.sequence, "grant": grant.pk,
            "user": grant.user.get_username(), "email": grant.user.email,
            "group": connector.group.slug, "via_group": grant.group.slug,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            "status": grant.status,
        })
        queue_message(event, Delivery.Channel.CONNECTOR, connector.recipient, body)


def send_to_connector(delivery: Delivery) -> str:
    """The outbox's sender for connector deliveries: what the target answered, or a
    DeliveryError (retryable unless the connector or the user is gone)."""
    connector = Connector.objects.select_related("group", "django_group").filter(
        pk=int(delivery.recipient.split(":", 1)[1])).first()
    if connector is None or not connector.enabled:
        raise DeliveryError("the connector was removed or disabled", retryable=False)
    payload = json.loads(delivery.body)
    target = target_for(connector)
    notice = Notice(payload=payload, body=delivery.body.encode(),
                    idempotency_key=delivery.idempotency_key)
    if not target.mirrors_access:
        return target.grant(payload["user"], notice) if payload["action"] == "grant" else (
            target.revoke(payload["user"], notice))
    user = User.objects.filter(username=payload["user"]).first()
    if user is None:
        raise DeliveryError("the user no longer exists", retryable=False)
    if decide(user, connector.group).allowed:
        return target.grant(user.get_username(), notice)
    return target.revoke(user.get_username(), notice)

"""Provisioning: after every grant change, each enabled connector of the groups the grant
reaches is told, through the outbox. The Django-group connector reconciles membership with
the access decision at send time, so a late retry can never undo a later revocation."""

import json

from django.contrib.auth.models import Group as AuthGroup
from django.db.models.expressions import RawSQL

from audit.alerts import queue_message
from audit.models import AuditEvent, Delivery
from audit.outbox import DeliveryError, post_signed
from breakglass.access import decide
from breakglass.models import Connector, Grant
from breakglass.sql import REACH_IDS_SQL


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
    connector = Connector.objects.select_related("group", "django_group").filter(
        pk=int(delivery.recipient.split(":", 1)[1])).first()
    if connector is None or not connector.enabled:
        raise DeliveryError("the connector was removed or disabled", retryable=False)
    payload = json.loads(delivery.body)
    if connector.kind == Connector.Kind.DJANGO_GROUP:
        return _reconcile_django_group(connector, payload)
    return post_signed(connector.url, delivery.body.encode(), connector.signing_secret(),
                       delivery.idempotency_key)


def _reconcile_django_group(connector: Connector, payload: dict) -> str:
    from accounts.models import User

    user = User.objects.filter(username=payload["user"]).first()
    if user is None:
        raise DeliveryError("the user no longer exists", retryable=False)
    auth_group: AuthGroup = connector.django_group
    if decide(user, connector.group).allowed:
        user.groups.add(auth_group)
        return f"django-group:{auth_group.pk}:added"
    user.groups.remove(auth_group)
    return f"django-group:{auth_group.pk}:removed"

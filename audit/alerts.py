"""Alerts are written as Delivery rows in the same transaction as their audit event (the
transactional outbox); the relay in audit/outbox.py sends them after commit."""

import json
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.db import fast_insert, insert_fields, insert_rows, insert_statement, row_values
from audit.models import AuditEvent, Delivery, WebhookEndpoint

logger = logging.getLogger(__name__)

WEBHOOK_RECIPIENT = "alert-webhook"  # the URL is read at send time: it may embed a secret
ALL_CHANNELS = (Delivery.Channel.EMAIL, Delivery.Channel.SMS, Delivery.Channel.WEBHOOK)


def event_link(event: AuditEvent) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("admin:audit_auditevent_change", args=[event.pk])


def alert(
    event: AuditEvent,
    *,
    users: Iterable = (),
    channels: Iterable[str] = ALL_CHANNELS,
    template: str = "event",
    context: dict | None = None,
    sensitive: bool = False,
) -> None:
    """Queue `event`'s alert to each user on each channel they can receive (email address,
    mobile number) and to the alert webhook. Idempotent per (event, channel, recipient).

    `sensitive` marks bodies that carry a secret (a one-time code): they are redacted once
    sent. Must run inside the transaction that recorded `event`.
    """
    channels = set(channels)
    context = {"event": event, "link": event_link(event), **(context or {})}
    targets = []
    for user in users:
        if Delivery.Channel.EMAIL in channels and user.email:
            targets.append((Delivery.Channel.EMAIL, user.email))
        if Delivery.Channel.SMS in channels and getattr(user, "mobile", ""):
            targets.append((Delivery.Channel.SMS, user.mobile))
    if Delivery.Channel.WEBHOOK in channels and settings.ALERT_WEBHOOK_URL:
        targets.append((Delivery.Channel.WEBHOOK, WEBHOOK_RECIPIENT))
    if Delivery.Channel.WEBHOOK in channels:
        targets.extend((Delivery.Channel.WEBHOOK, recipient)
                       for recipient in WebhookEndpoint.objects.recipients_for(event.kind))
    for extra_targets in TARGET_PROVIDERS:
        targets.extend(extra_targets(event, channels, template))
    deliveries = [
        _render(event, channel, recipient, template, context, sensitive)
        for channel, recipient in dict.fromkeys(targets)
    ]
    # One statement for all of them; a delivery that already exists is kept as it is.
    Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    transaction.on_commit(nudge_relay)


# Other apps' destinations (a Slack channel): `provider(event, channels, template)` returns
# (channel, recipient) pairs, and RENDERERS[channel](event, recipient, template, context) the
# body, so audit does not import them.
TARGET_PROVIDERS = []
RENDERERS = {}


def register_targets(provider, channel: str, renderer) -> None:
    TARGET_PROVIDERS.append(provider)
    RENDERERS[channel] = renderer


def alert_security_reviewers(event: AuditEvent, **options) -> None:
    alert(event, users=User.objects.security_reviewers(), **options)


def webhook_payload(event: AuditEvent, text: str, link: str) -> str:
    """Slack-compatible JSON: `text` for chat tools, `event` for machines."""
    return json.dumps(
        {
            "text": text,
            "event": {
                "sequence": event.sequence, "kind": event.kind, "outcome": event.outcome,
                "recorded_at": event.recorded_at.isoformat(), "actor": event.actor_label,
                "actor_type": event.actor_type, "target": event.target_label,
                "reason": event.reason, "link": link,
            },
        },
        ensure_ascii=False,
    )


def _render(event, channel, recipient, template, context, sensitive) -> Delivery:
    now = timezone.now()
    if channel in RENDERERS:
        return Delivery(event=event, channel=channel, recipient=recipient,
                        body=RENDERERS[channel](event, recipient, template, context),
                        sensitive=sensitive, created_at=now, next_attempt_at=now)
    folder = {"email": "emails", "sms": "sms", "webhook": "sms"}[channel]
    body = render_to_string(f"{folder}/{template}.txt", context).strip()
    subject = html_body = ""
    if channel == Delivery.Channel.WEBHOOK:
        body = webhook_payload(event, body, context["link"])
    if channel == Delivery.Channel.EMAIL:
        subject = " ".join(render_to_string(f"emails/{template}_subject.txt", context).split())
        html_body = render_to_string(f"emails/{template}.html", context)
    now = timezone.now()
    return Delivery(
        event=event, channel=channel, recipient=recipient, subject=subject, body=body,
        html_body=html_body, sensitive=sensitive, created_at=now, next_attempt_at=now,
    )


def alert_later(event: AuditEvent, handler: str, **params) -> None:
    """Queue `event`'s alerts and follow-ups as one outbox row that the relay expands with the
    handler registered under `handler` (audit.outbox.register_fanout): finding recipients,
    rendering bodies and telling connectors happen there, not in the caller's transaction.

    For hot paths (activation): the caller's transaction writes one row and nothing else. As
    durable as alert(): the row commits or rolls back with the event, and the relay retries
    its expansion like any delivery (the deliveries it writes are idempotent). `params` must
    be JSON; the handler renders from the event's own data, so late expansion says what was
    true when the event happened."""
    fast_insert(fanout_row(event, handler, params))
    # No nudge: the worker's one-second tick finds the row (audit.outbox.relay_if_due).


def alert_later_many(events: list[AuditEvent], handler: str, **params) -> None:
    """alert_later for each of `events` with the same `params` (a service's batch), in one
    go: the rows alert_later would write, one per event."""
    if not events:
        return
    template = row_values(fanout_row(events[0], handler, params))
    at = [field.attname for field in insert_fields(Delivery)].index("event_id")
    insert_rows(Delivery, [[*template[:at], event.pk, *template[at + 1:]] for event in events])


def alert_later_statement(event: AuditEvent, handler: str, **params) -> tuple[str, list]:
    """alert_later's row as (sql, params), for a hot path that writes it in the same
    statement as another row (audit.db.fast_insert's `with_first`, PostgreSQL only)."""
    return insert_statement(fanout_row(event, handler, params))


def fanout_row(event: AuditEvent, handler: str, params: dict) -> Delivery:
    now = timezone.now()
    return Delivery(event=event, channel=Delivery.Channel.FANOUT, recipient=handler,
                    body=json.dumps(params), created_at=now, next_attempt_at=now)


def queue_message(event: AuditEvent, channel: str, recipient: str, body: str, *,
                  due_since=None) -> Delivery:
    """A machine-to-machine delivery (a provisioning connector's payload) in the outbox.
    `due_since` (default now) places it in the relay's queue: a change due since its event
    goes before deliveries queued after that event."""
    now = timezone.now()
    delivery, _ = Delivery.objects.get_or_create(
        event=event, channel=channel, recipient=recipient,
        defaults={"body": body, "created_at": now, "next_attempt_at": due_since or now},
    )
    transaction.on_commit(nudge_relay)
    return delivery


def nudge_relay() -> None:
    """After commit, ask a worker to send at once; the minute sweep is the safety net, so a
    broker hiccup here delays an alert but never loses it and never fails the request."""
    from django_q.tasks import async_task

    try:
        async_task("audit.tasks.send_due_deliveries")
    except Exception:
        logger.warning("could not nudge the alert relay; the sweep will send", exc_info=True)

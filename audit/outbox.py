"""The alert relay: claims due deliveries, sends them outside any transaction, and records the
outcome. At-least-once with an idempotency key per (event, channel, recipient).

Each claim leases one row for one provider call and gives it a fresh lease token; every later
write of the row is conditional on that token (and on the row still being sent), so a relay
that lost its lease cannot change the row, and its late result is dropped and logged. Every
provider call is bounded by timeouts that fit inside the lease (system check audit.E005)."""

import json
import logging
import secrets
import urllib.error
import urllib.request
from datetime import timedelta
from email.utils import make_msgid
from typing import NamedTuple

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import webhooks
from audit.alerts import alert_security_reviewers, nudge_relay
from audit.catalogue import EventKind, Outcome
from audit.models import Delivery
from audit.services import record
from audit.sms import SmsError, get_sms_backend

logger = logging.getLogger(__name__)

# One row is leased for one provider call; a row whose relay died is claimed again after it
# (ALERT_LEASE_SECONDS; the provider timeouts must fit in it, see audit.E005).
LEASE = timedelta(seconds=settings.ALERT_LEASE_SECONDS)
# A provider call makes a few network round trips (SMTP: connect, EHLO, STARTTLS, AUTH, MAIL,
# DATA), each bounded by its client's timeout: together they must end inside the lease.
ROUND_TRIPS_PER_CALL = 6
DEAD_LETTER_AFTER = timedelta(hours=24)
MAX_BACKOFF_SECONDS = 30 * 60
WEBHOOK_TIMEOUT_SECONDS = 10
REDACTED = "[redacted after delivery]"
_jitter = secrets.SystemRandom()


class Lease(NamedTuple):
    delivery_id: int
    token: str


class LeaseLost(Exception):
    """Another relay took the row over after this relay's lease ran out."""


def max_provider_timeout() -> float:
    """The longest per-operation timeout a channel's client may use (system check)."""
    return LEASE.total_seconds() / ROUND_TRIPS_PER_CALL


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with full jitter: about 5 s, 10 s, 20 s ... capped at 30 minutes."""
    ceiling = min(5 * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
    return timedelta(seconds=_jitter.uniform(ceiling / 2, ceiling))


@transaction.atomic
def claim_next_delivery() -> Lease | None:
    """Lease the most overdue delivery to this relay for one provider call: a fresh token,
    and LEASE from now. One row at a time, so no lease has to cover the rows queued behind it
    (a batch leased at once could outlive its lease and be sent twice). SKIP LOCKED lets
    several relays claim at once on PostgreSQL without waiting on each other's rows."""
    now = timezone.now()
    delivery = (
        Delivery.objects.select_for_update(skip_locked=True)
        .filter(
            Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=Delivery.Status.SENDING, claimed_until__lt=now)
        )
        .order_by("next_attempt_at", "pk")
        .first()
    )
    if delivery is None:
        return None
    delivery.status = Delivery.Status.SENDING
    delivery.claimed_until = now + LEASE
    delivery.lease_token = secrets.token_hex(16)
    delivery.attempts += 1
    delivery.save(update_fields=["status", "claimed_until", "lease_token", "attempts"])
    return Lease(delivery.pk, delivery.lease_token)


def send_due_deliveries() -> int:
    """Send due deliveries, one claim at a time, until none is left or the relay's time is up
    (see relay_budget); the worker's next tick sends the rest. Returns how many were handled."""
    handled = 0
    stop_claiming_at = timezone.now() + relay_budget()
    while timezone.now() < stop_claiming_at and (lease := claim_next_delivery()):
        send_delivery(lease)
        handled += 1
    return handled


def relay_budget() -> timedelta:
    """How long a relay keeps claiming: django-q2 kills a task at Q_CLUSTER's timeout, and a
    relay killed during a provider call would leave its row to be sent again once its lease
    runs out. The last claim still has a whole lease's worth of capped calls before the kill."""
    return timedelta(seconds=settings.Q_CLUSTER["timeout"]) - LEASE


def relay_if_due() -> bool:
    """The worker's one-second tick (audit's qcluster command): start the relay when a
    delivery is due. alert_later() rows rely on this instead of a nudge per request, which
    would cost the request a broker write; alert() still nudges."""
    due = Delivery.objects.filter(status=Delivery.Status.PENDING,
                                  next_attempt_at__lte=timezone.now()).exists()
    if due:
        from django_q.tasks import async_task

        async_task("audit.tasks.send_due_deliveries")
    return due


def leased(lease: Lease):
    """The row, only while this relay still holds it: every write after the claim goes
    through here (UPDATE ... WHERE id = %s AND lease_token = %s AND status = 'sending')."""
    return Delivery.objects.filter(pk=lease.delivery_id, lease_token=lease.token,
                                   status=Delivery.Status.SENDING)


# Channels whose whole effect is rows in this database: the effect commits only together with
# the fenced "sent", so a relay that lost its lease leaves nothing behind.
IN_DATABASE_CHANNELS = {Delivery.Channel.FANOUT}


def send_delivery(lease: Lease) -> None:
    """Make the provider call for a leased delivery and record its outcome, unless another
    relay has taken the row over; a late outcome is dropped and logged."""
    delivery = leased(lease).select_related("event").first()
    if delivery is None:
        return
    try:
        if delivery.channel in IN_DATABASE_CHANNELS:
            with transaction.atomic():
                mark_sent(lease, CHANNELS[delivery.channel](delivery), delivery.sensitive)
        else:
            mark_sent(lease, CHANNELS[delivery.channel](delivery), delivery.sensitive)
    except LeaseLost:
        logger.warning("alert delivery %s: this relay lost its lease; its late result is "
                       "dropped", lease.delivery_id)
    except (DeliveryError, SmsError) as exc:
        fail_attempt(lease, str(exc), retryable=exc.retryable)
    except Exception as exc:  # a bug or an unexpected provider answer must not stop the relay
        logger.exception("alert delivery %s failed unexpectedly", delivery.pk)
        fail_attempt(lease, f"{type(exc).__name__}", retryable=True)


def mark_sent(lease: Lease, message_id: str, sensitive: bool) -> None:
    """Record the provider's acceptance. Raises LeaseLost when the row is no longer ours."""
    changes = {"status": Delivery.Status.SENT, "sent_at": timezone.now(),
               "provider_message_id": message_id[:128], "claimed_until": None,
               "lease_token": "", "last_error": ""}
    if sensitive:
        changes.update(body=REDACTED, html_body=REDACTED)
    if not leased(lease).update(**changes):
        raise LeaseLost(lease.delivery_id)


@transaction.atomic
def fail_attempt(lease: Lease, error: str, *, retryable: bool) -> None:
    """Schedule the next try, or dead-letter the delivery when it cannot succeed or has been
    failing for 24 hours, and report that on the other channels. Nothing happens (but a log
    line) when the row is no longer this relay's."""
    delivery = leased(lease).select_for_update(of=("self",)).select_related("event").first()
    if delivery is None:
        logger.warning("alert delivery %s: this relay lost its lease; its late failure is "
                       "dropped", lease.delivery_id)
        return
    now = timezone.now()
    changes = {"last_error": error[:1000], "claimed_until": None, "lease_token": ""}
    if retryable and now - delivery.created_at < DEAD_LETTER_AFTER:
        changes.update(status=Delivery.Status.PENDING,
                       next_attempt_at=now + backoff(delivery.attempts))
        leased(lease).update(**changes)
        return
    changes["status"] = Delivery.Status.FAILED
    if delivery.sensitive:
        changes.update(body=REDACTED, html_body=REDACTED)
    leased(lease).update(**changes)
    delivery.refresh_from_db()
    report_dead_letter(delivery)


def report_dead_letter(delivery: Delivery) -> None:
    event = record(
        EventKind.DELIVERY_FAILED, actor=None, target=delivery, outcome=Outcome.FAILURE,
        reason=delivery.last_error,
        data={"event": delivery.event.sequence, "channel": delivery.channel},
    )
    if delivery.event.kind == EventKind.DELIVERY_FAILED:
        return  # a report that itself failed is visible in the admin; no report of a report
    other_channels = [c for c in Delivery.Channel.values if c != delivery.channel]
    alert_security_reviewers(
        event, channels=other_channels, template="delivery_failed", context={"failed": delivery}
    )


@transaction.atomic
def retry_delivery(delivery: Delivery, *, actor) -> Delivery:
    """Make a pending or failed delivery due now (the admin's "Retry now")."""
    delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
    if delivery.status in {Delivery.Status.SENT, Delivery.Status.SENDING}:
        return delivery
    delivery.status = Delivery.Status.PENDING
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["status", "next_attempt_at"])
    record(EventKind.DELIVERY_RETRIED, actor=actor, target=delivery)
    transaction.on_commit(nudge_relay)
    return delivery


def send_email(delivery: Delivery) -> str:
    message_id = make_msgid(domain="breakglass")
    message = EmailMultiAlternatives(
        subject=delivery.subject, body=delivery.body, to=[delivery.recipient],
        headers={"Message-ID": message_id, "X-Breakglass-Delivery": delivery.idempotency_key},
    )
    if delivery.html_body:
        message.attach_alternative(delivery.html_body, "text/html")
    try:
        message.send()
    except OSError as exc:  # smtplib errors, refused connections and timeouts
        raise DeliveryError(f"email: {type(exc).__name__}") from exc
    return message_id


def send_sms(delivery: Delivery) -> str:
    return get_sms_backend().send(delivery.recipient, delivery.body)


def send_webhook(delivery: Delivery) -> str:
    """An alert webhook, signed per Standard Webhooks with the secrets its endpoint has now;
    an endpoint gone or disabled since the alert dead-letters it (audit/webhooks.py)."""
    now = timezone.now()
    try:
        target = webhooks.destination(delivery.recipient, now)
    except webhooks.EndpointUnavailable as exc:
        raise DeliveryError(str(exc), retryable=False) from exc
    payload = json.loads(delivery.body)
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    msg_id = webhooks.message_id(delivery.idempotency_key)
    return post_json(target.url, body, {
        **webhooks.signature_headers(msg_id, now, body, target.secrets),
        "X-Breakglass-Delivery": delivery.idempotency_key})


CHANNELS = {
    Delivery.Channel.EMAIL: send_email,
    Delivery.Channel.SMS: send_sms,
    Delivery.Channel.WEBHOOK: send_webhook,
}


def register_channel(channel: str, sender) -> None:
    """Other apps add their own senders (provisioning connectors) without audit importing
    them."""
    CHANNELS[channel] = sender


FANOUTS = {}


def register_fanout(name: str, handler) -> None:
    """`handler(event, **params)` expands an alert_later() row: it calls alert() and queues
    follow-ups, inside one transaction of the relay."""
    FANOUTS[name] = handler


def expand_fanout(delivery: Delivery) -> str:
    handler = FANOUTS.get(delivery.recipient)
    if handler is None:
        raise DeliveryError(f"no fan-out handler named {delivery.recipient!r}", retryable=False)
    with transaction.atomic():
        handler(delivery.event, **json.loads(delivery.body))
    return "expanded"


CHANNELS[Delivery.Channel.FANOUT] = expand_fanout


def post_json(url: str, body: bytes, headers: dict[str, str]) -> str:
    """POST a JSON `body` with `headers`; any non-2xx answer is an error."""
    request = urllib.request.Request(  # noqa: S310 (the URL is the operator's own setting)
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            return f"http-{response.status}"
    except urllib.error.HTTPError as exc:
        retryable = exc.code >= 500 or exc.code in {408, 409, 425, 429}
        raise DeliveryError(f"webhook answered {exc.code}", retryable=retryable) from exc
    except OSError as exc:
        raise DeliveryError(f"webhook unreachable: {type(exc).__name__}") from exc

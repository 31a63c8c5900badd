"""The alert outbox (QUALITY Q29/Q30): rows written with the event, sent after commit by the
relay, retried with backoff through a provider outage, delivered exactly once, dead-lettered
after 24 hours and reported on another channel."""

import base64
import itertools
import json
from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks import Webhook

from audit import sms
from audit.alerts import alert
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import REDACTED, retry_delivery, send_due_deliveries
from audit.services import record
from audit.twilio_sms import TwilioSmsBackend
from tests.audit.fakes import FakeTwilioTransport, WebhookReceiver

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"webhook-secret-for-tests-32bytes").decode()


@pytest.fixture
def twilio(settings, monkeypatch):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    settings.TWILIO_AUTH_TOKEN = "test-token"
    settings.TWILIO_FROM_NUMBER = "+15555550000"
    transport = FakeTwilioTransport()
    monkeypatch.setattr(TwilioSmsBackend, "http_client", transport)
    return transport


@pytest.fixture
def on_call(reviewer):
    reviewer.mobile = "+15555550123"
    reviewer.save()
    return reviewer


def lockout_alert(users, **options) -> AuditEvent:
    with transaction.atomic():
        event = record(EventKind.LOCKOUT, actor=None, reason="five failures")
        alert(event, users=users, **options)
    return event


def advance(minutes: float) -> None:
    """Let `minutes` of simulated time pass for the outbox: every stored time moves back."""
    delta = timedelta(minutes=minutes)
    Delivery.objects.update(
        created_at=F("created_at") - delta, next_attempt_at=F("next_attempt_at") - delta
    )


def test_deliveries_are_written_with_the_event_and_are_idempotent(on_call, settings):
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    event = lockout_alert([on_call])
    assert sorted(event.deliveries.values_list("channel", "recipient")) == [
        ("email", on_call.email), ("sms", on_call.mobile), ("webhook", "alert-webhook")]
    with transaction.atomic():
        alert(event, users=[on_call])
    assert event.deliveries.count() == 3


def test_a_rolled_back_change_leaves_no_alert(on_call):
    with pytest.raises(RuntimeError), transaction.atomic():
        alert(record(EventKind.LOCKOUT, actor=None), users=[on_call])
        raise RuntimeError("the change failed")
    assert not Delivery.objects.exists()


def test_email_alert_has_text_and_html_and_says_who_what_why_when(on_call):
    lockout_alert([on_call], channels=["email"])
    assert send_due_deliveries() == 1
    message = mail.outbox[0]
    assert message.subject.startswith("[Breakglass] A username was locked out")
    assert "Why:     five failures" in message.body
    assert "/admin/audit/auditevent/" in message.body
    assert message.alternatives[0][1] == "text/html"
    delivery = Delivery.objects.get()
    assert delivery.status == "sent" and delivery.provider_message_id == message.extra_headers[
        "Message-ID"]


def test_sms_goes_through_the_real_twilio_client(twilio, on_call):
    lockout_alert([on_call], channels=["sms"])
    send_due_deliveries()
    assert [m["to"] for m in twilio.sent] == ["+15555550123"]
    assert twilio.sent[0]["from"] == "+15555550000"
    assert Delivery.objects.get().provider_message_id == twilio.sent[0]["sid"]


def test_a_30_minute_twilio_outage_delays_alerts_but_loses_none(twilio, on_call):
    twilio.mode = "500"
    events = [lockout_alert([on_call], channels=["sms"]) for _ in range(10)]
    for minute in range(30):
        twilio.mode = "timeout" if minute % 2 else "500"
        if minute == 12:
            events += [lockout_alert([on_call], channels=["sms"]) for _ in range(5)]
        send_due_deliveries()
        advance(1)
    assert twilio.sent == []
    assert not Delivery.objects.filter(status=Delivery.Status.SENT).exists()
    assert Delivery.objects.filter(status=Delivery.Status.PENDING).count() == 15

    twilio.mode = "up"
    for _ in range(40):  # the longest backoff after 30 minutes of failures is under 30 minutes
        send_due_deliveries()
        advance(1)

    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 15
    sent_bodies = [m["body"] for m in twilio.sent]
    assert len(sent_bodies) == 15
    assert sorted(Delivery.objects.values_list("provider_message_id", flat=True)) == sorted(
        m["sid"] for m in twilio.sent)
    assert all(d.attempts > 5 for d in Delivery.objects.filter(event__in=events[:10]))


def test_retries_back_off_with_jitter(twilio, on_call):
    twilio.mode = "500"
    lockout_alert([on_call], channels=["sms"])
    gaps = []
    for _ in range(6):
        send_due_deliveries()
        delivery = Delivery.objects.get()
        gaps.append((delivery.next_attempt_at - timezone.now()).total_seconds())
        Delivery.objects.update(next_attempt_at=timezone.now())
    assert 2 < gaps[0] <= 5 and 79 < gaps[5] <= 160
    assert all(later >= earlier for earlier, later in itertools.pairwise(gaps))
    assert len({round(gap, 3) for gap in gaps}) == 6
    assert Delivery.objects.get().last_error == "Twilio 500 (code 20500)"


def test_a_delivery_failing_for_24_hours_is_dead_lettered_and_reported_elsewhere(twilio, on_call):
    twilio.mode = "500"
    lockout_alert([on_call], channels=["sms"])
    send_due_deliveries()
    advance(24 * 60 + 1)
    Delivery.objects.update(next_attempt_at=timezone.now())
    send_due_deliveries()

    failed = Delivery.objects.get(channel="sms", event__kind=EventKind.LOCKOUT)
    assert failed.status == Delivery.Status.FAILED
    report = AuditEvent.objects.get(kind=EventKind.DELIVERY_FAILED)
    assert report.target_id == str(failed.pk)
    assert list(report.deliveries.values_list("channel", flat=True)) == ["email"]
    assert "could not be delivered for 24 hours" in mail.outbox[0].subject
    assert "Twilio 500" in mail.outbox[0].body


def test_a_permanent_refusal_is_dead_lettered_at_once(twilio, on_call):
    twilio.mode = "400"
    lockout_alert([on_call], channels=["sms"])
    send_due_deliveries()
    assert Delivery.objects.get(channel="sms").status == Delivery.Status.FAILED
    assert twilio.calls == 1


def test_sensitive_bodies_are_redacted_once_sent(on_call):
    sms.outbox.clear()
    with transaction.atomic():
        event = record(EventKind.LOCKOUT, actor=None, reason="code 91827364")
        alert(event, users=[on_call], channels=["sms"], sensitive=True)
    send_due_deliveries()
    assert "91827364" in sms.outbox[0].body
    assert Delivery.objects.get().body == REDACTED


def test_retry_now_makes_a_failed_delivery_due_and_is_audited(twilio, on_call, admin_user):
    twilio.mode = "400"
    lockout_alert([on_call], channels=["sms"])
    send_due_deliveries()
    delivery = Delivery.objects.get(channel="sms")
    twilio.mode = "up"
    retry_delivery(delivery, actor=admin_user)
    send_due_deliveries()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    retried = AuditEvent.objects.get(kind=EventKind.DELIVERY_RETRIED)
    assert retried.actor_label == admin_user.username


def test_webhook_alert_is_signed_and_slack_compatible(on_call, settings):
    settings.ALERT_WEBHOOK_SECRET = WEBHOOK_SECRET
    with WebhookReceiver() as receiver:
        settings.ALERT_WEBHOOK_URL = receiver.url
        event = lockout_alert([], channels=["webhook"])
        send_due_deliveries()
    headers, body = receiver.requests[0]
    # Standard Webhooks: the package verifies the signature and the timestamp's freshness.
    assert json.loads(body) == Webhook(WEBHOOK_SECRET).verify(body, headers)
    assert headers["X-Breakglass-Delivery"] == f"{event.pk}:webhook:alert-webhook"
    payload = json.loads(body)
    assert payload["text"].startswith("Breakglass: A username was locked out")
    assert payload["event"]["sequence"] == event.sequence
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_a_webhook_answering_503_is_retried(on_call, settings):
    settings.ALERT_WEBHOOK_SECRET = WEBHOOK_SECRET
    with WebhookReceiver(status=503) as receiver:
        settings.ALERT_WEBHOOK_URL = receiver.url
        lockout_alert([], channels=["webhook"])
        send_due_deliveries()
        delivery = Delivery.objects.get()
        assert (delivery.status, delivery.last_error) == ("pending", "webhook answered 503")
        receiver.status = 200
        Delivery.objects.update(next_attempt_at=timezone.now())
        send_due_deliveries()
    assert len(receiver.requests) == 2
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_a_worker_that_died_mid_send_is_replaced_after_its_lease(on_call):
    lockout_alert([on_call], channels=["email"])
    from audit.outbox import claim_next_delivery

    assert claim_next_delivery() is not None  # claimed, then the worker "dies"
    assert send_due_deliveries() == 0
    Delivery.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert send_due_deliveries() == 1
    assert len(mail.outbox) == 1


def test_healthz_reports_a_stuck_outbox_and_a_late_checkpoint(client, on_call):
    from audit.models import Heartbeat
    from audit.services import CHECKPOINT_HEARTBEAT, record_heartbeat

    record_heartbeat()
    record_heartbeat(CHECKPOINT_HEARTBEAT)
    lockout_alert([on_call], channels=["email"])
    assert client.get("/healthz").status_code == 200
    advance(6)
    Heartbeat.objects.filter(name=CHECKPOINT_HEARTBEAT).update(
        beat_at=timezone.now() - timedelta(minutes=66))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["problems"] == [
        "an alert has waited 6 minutes to be sent",
        "the last audit checkpoint is 66 minutes old",
    ]

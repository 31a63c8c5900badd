"""Alert webhooks signed per Standard Webhooks (QUALITY Q46), checked by a real receiver on
127.0.0.1 that verifies every delivery with the standardwebhooks package: retries keep their
webhook-id, a rotation keeps the old secret signing through its overlap and not after, and a
replayed, late or tampered delivery is refused."""

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from audit import webhooks
from audit.alerts import alert
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery, WebhookEndpoint
from audit.outbox import send_due_deliveries
from audit.services import record
from audit.webhooks import (
    InvalidEndpoint,
    change_webhook_endpoint,
    create_webhook_endpoint,
    rotate_webhook_secret,
)
from recovery.crypto import decrypt_field
from tests.audit.fakes import WebhookReceiver
from tests.audit.webhook_receiver import VerifyingReceiver, post
from tests.test_security_baseline import ROOT, production_env

pytestmark = pytest.mark.django_db


def make_endpoint(url: str, name: str = "soc", **fields) -> tuple[WebhookEndpoint, str]:
    endpoint = WebhookEndpoint(name=name, url=url, **fields)
    return endpoint, create_webhook_endpoint(endpoint, actor=None)


def lockout_alert(kind: str = EventKind.LOCKOUT) -> AuditEvent:
    with transaction.atomic():
        event = record(kind, actor=None, reason="five failures")
        alert(event, channels=["webhook"])
    return event


def make_due() -> None:
    Delivery.objects.update(next_attempt_at=timezone.now())


def endpoint_events(action: str):
    return AuditEvent.objects.filter(kind=EventKind.WEBHOOK_ENDPOINT_CHANGED,
                                     data__action=action)


# --- Secrets ----------------------------------------------------------------------------------

def test_a_new_endpoint_gets_a_standard_webhooks_secret_stored_encrypted():
    _, secret = make_endpoint("https://soc.example/hooks")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    stored = WebhookEndpoint.objects.get()
    assert secret not in stored.secret_encrypted
    assert secret.removeprefix("whsec_") not in stored.secret_encrypted
    assert decrypt_field(stored.secret_encrypted) == secret
    event = endpoint_events("created").get()
    assert event.data["endpoint"] == "soc" and secret not in json.dumps(event.data)
    assert make_endpoint("https://other.example", name="other")[1] != secret


def test_secrets_outside_24_to_64_bytes_or_without_the_prefix_are_not_secrets():
    def encoded(size: int) -> str:
        return base64.b64encode(b"k" * size).decode()

    assert webhooks.is_secret(webhooks.new_secret())
    assert webhooks.is_secret("whsec_" + encoded(24)) and webhooks.is_secret(
        "whsec_" + encoded(64))
    assert not webhooks.is_secret("whsec_" + encoded(23))
    assert not webhooks.is_secret("whsec_" + encoded(65))
    assert not webhooks.is_secret(encoded(32))
    assert not webhooks.is_secret("whsec_not base64!")


# --- Each delivery signed, checked by a real receiver ------------------------------------------

def test_a_delivery_verifies_with_the_endpoints_secret_and_says_which_delivery_it_is():
    with VerifyingReceiver() as receiver:
        endpoint, secret = make_endpoint(receiver.url)
        receiver.secrets = [secret]
        event = lockout_alert()
        send_due_deliveries()
    [received] = receiver.received
    assert received.verified_with == [secret], received.errors
    assert received.headers["webhook-id"].startswith("msg_")
    assert abs(int(received.headers["webhook-timestamp"]) - timezone.now().timestamp()) < 60
    assert received.headers["x-breakglass-delivery"] == f"{event.pk}:webhook:webhook:{endpoint.pk}"
    payload = json.loads(received.body)
    assert payload["event"]["sequence"] == event.sequence
    assert payload["text"].startswith("Breakglass: A username was locked out")
    delivery = Delivery.objects.get()
    assert (delivery.recipient, delivery.status) == (endpoint.recipient, Delivery.Status.SENT)


def test_a_retried_delivery_keeps_its_webhook_id_with_a_fresh_timestamp_and_verifies(
        monkeypatch):
    with VerifyingReceiver(status=503) as receiver:
        _, secret = make_endpoint(receiver.url)
        receiver.secrets = [secret]
        lockout_alert()
        send_due_deliveries()
        assert Delivery.objects.get().status == Delivery.Status.PENDING
        receiver.status = 204
        later = timezone.now() + timedelta(seconds=90)
        monkeypatch.setattr(timezone, "now", lambda: later)
        send_due_deliveries()
    first, retry = receiver.received
    assert first.verified_with == [secret] and retry.verified_with == [secret]
    assert retry.webhook_id == first.webhook_id
    assert retry.headers["x-breakglass-delivery"] == first.headers["x-breakglass-delivery"]
    assert int(retry.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"]) + 90
    assert not retry.repeat  # the 503 accepted nothing: the retry is the first it keeps
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_each_delivery_has_its_own_webhook_id():
    with VerifyingReceiver() as receiver:
        _, secret = make_endpoint(receiver.url)
        receiver.secrets = [secret]
        lockout_alert()
        lockout_alert()
        send_due_deliveries()
    ids = [received.webhook_id for received in receiver.received]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_a_delivery_replayed_within_the_window_verifies_and_is_dropped_by_its_id():
    with VerifyingReceiver() as receiver:
        _, secret = make_endpoint(receiver.url)
        receiver.secrets = [secret]
        lockout_alert()
        send_due_deliveries()
        captured = receiver.received[0]
        assert post(receiver.url, captured.headers, captured.body) == 204
    replayed = receiver.received[1]
    assert replayed.verified_with == [secret] and replayed.repeat


def test_a_captured_delivery_resent_more_than_five_minutes_later_is_refused(monkeypatch):
    """The relay signs at the time of each attempt; a copy taken off the wire six minutes ago
    carries that time, and the package's verify refuses it though its signature is genuine."""
    six_minutes_ago = timezone.now() - timedelta(minutes=6)
    with WebhookReceiver() as tap, VerifyingReceiver() as receiver:
        _, secret = make_endpoint(tap.url)
        receiver.secrets = [secret]
        with monkeypatch.context() as past:
            past.setattr(timezone, "now", lambda: six_minutes_ago)
            lockout_alert()
            send_due_deliveries()
        headers, body = tap.requests[0]
        headers = {name.lower(): value for name, value in headers.items()}
        signed_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
        assert Webhook(secret).sign(headers["webhook-id"], signed_at, body) == (
            headers["webhook-signature"])
        assert post(receiver.url, headers, body) == 400
    assert receiver.received[0].errors == ["Message timestamp too old"]


def test_a_tampered_body_fails_verification():
    with VerifyingReceiver() as receiver:
        _, secret = make_endpoint(receiver.url)
        receiver.secrets = [secret]
        lockout_alert()
        send_due_deliveries()
        captured = receiver.received[0]
        tampered = captured.body.replace(b"locked out", b"locked 0ut")
        assert tampered != captured.body
        assert post(receiver.url, captured.headers, tampered) == 400
    assert receiver.received[1].errors == ["No matching signature found"]


def test_a_receiver_with_another_secret_refuses_and_the_delivery_is_dead_lettered():
    with VerifyingReceiver([webhooks.new_secret()]) as receiver:
        make_endpoint(receiver.url)
        lockout_alert()
        send_due_deliveries()
    assert receiver.received[0].errors == ["No matching signature found"]
    delivery = Delivery.objects.get(event__kind=EventKind.LOCKOUT)
    assert (delivery.status, delivery.last_error) == (Delivery.Status.FAILED,
                                                      "webhook answered 400")


# --- Rotation: two secrets in force, then one --------------------------------------------------

def test_during_rotation_both_secrets_sign_and_after_the_overlap_only_the_new_one(
        admin_user, settings):
    settings.WEBHOOK_ROTATION_OVERLAP = timedelta(hours=24)
    with VerifyingReceiver() as receiver:
        endpoint, old = make_endpoint(receiver.url)
        new = rotate_webhook_secret(endpoint, actor=admin_user)
        receiver.secrets = [old, new]
        lockout_alert()
        send_due_deliveries()
        during = receiver.received[-1]
        # 24 hours on, the overlap has ended.
        WebhookEndpoint.objects.update(
            previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
        lockout_alert()
        send_due_deliveries()
        after = receiver.received[-1]
    assert new != old
    assert during.verified_with == [old, new]  # a receiver holding either one verifies
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert after.verified_with == [new]
    assert after.errors == ["No matching signature found"]  # the one holding only the old
    assert len(after.headers["webhook-signature"].split(" ")) == 1


def test_a_rotation_is_audited_without_the_secret_and_keeps_the_old_one_for_the_overlap(
        admin_user, settings):
    settings.WEBHOOK_ROTATION_OVERLAP = timedelta(hours=6)
    endpoint, old = make_endpoint("https://soc.example/hooks")
    history_before = endpoint.history.count()
    new = rotate_webhook_secret(endpoint, actor=admin_user)
    endpoint.refresh_from_db()
    assert decrypt_field(endpoint.secret_encrypted) == new
    assert decrypt_field(endpoint.previous_secret_encrypted) == old
    overlap = endpoint.previous_secret_expires_at - endpoint.secret_rotated_at
    assert overlap == timedelta(hours=6)
    event = endpoint_events("rotated").get()
    assert event.actor_label == admin_user.username
    assert event.data["endpoint"] == "soc"
    assert event.data["previous_secret_valid_until"] == (
        endpoint.previous_secret_expires_at.isoformat())
    assert old not in json.dumps(event.data) and new not in json.dumps(event.data)
    assert endpoint.history.count() == history_before + 1
    history = json.dumps(list(endpoint.history.values()), default=str)
    assert old not in history and new not in history


def test_a_second_rotation_drops_the_oldest_secret_at_once(admin_user):
    endpoint, first = make_endpoint("https://soc.example/hooks")
    second = rotate_webhook_secret(endpoint, actor=admin_user)
    third = rotate_webhook_secret(endpoint, actor=admin_user)
    endpoint.refresh_from_db()
    assert webhooks.signing_secrets(endpoint, timezone.now()) == [third, second]
    assert first not in webhooks.signing_secrets(endpoint, timezone.now())


# --- Targets: one delivery per endpoint that takes the event ----------------------------------

def test_alert_queues_one_delivery_per_enabled_endpoint_that_takes_the_event(settings):
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    every, _ = make_endpoint("https://all.example", name="all")
    lockouts, _ = make_endpoint("https://lockouts.example", name="lockouts",
                                event_kinds=[EventKind.LOCKOUT])
    make_endpoint("https://others.example", name="others",
                  event_kinds=[EventKind.GRANT_ACTIVATED])
    make_endpoint("https://off.example", name="off", enabled=False)
    event = lockout_alert()
    assert sorted(event.deliveries.values_list("recipient", flat=True)) == sorted(
        ["alert-webhook", every.recipient, lockouts.recipient])
    with transaction.atomic():
        alert(event, channels=["webhook"])
    assert event.deliveries.count() == 3


def test_the_environments_endpoint_keeps_its_recipient_and_signs_with_its_secret(settings):
    secret = webhooks.new_secret()
    settings.ALERT_WEBHOOK_SECRET = secret
    with VerifyingReceiver([secret]) as receiver:
        settings.ALERT_WEBHOOK_URL = receiver.url
        event = lockout_alert()
        send_due_deliveries()
    [received] = receiver.received
    assert received.verified_with == [secret]
    assert received.headers["x-breakglass-delivery"] == f"{event.pk}:webhook:alert-webhook"
    assert "x-breakglass-signature" not in received.headers


def test_an_environment_secret_that_is_not_whsec_dead_letters_its_deliveries(settings):
    settings.ALERT_WEBHOOK_SECRET = "an-old-style-shared-secret"
    with WebhookReceiver() as receiver:
        settings.ALERT_WEBHOOK_URL = receiver.url
        lockout_alert()
        send_due_deliveries()
    assert receiver.requests == []
    delivery = Delivery.objects.get(recipient="alert-webhook")
    assert (delivery.status, delivery.last_error) == (
        Delivery.Status.FAILED, "ALERT_WEBHOOK_SECRET is not a whsec_ secret")


def test_an_endpoint_disabled_after_the_alert_dead_letters_its_delivery_at_once(admin_user):
    with VerifyingReceiver() as receiver:
        endpoint, _ = make_endpoint(receiver.url)
        lockout_alert()
        change_webhook_endpoint(endpoint, changes={"enabled": False}, actor=admin_user)
        send_due_deliveries()
    assert receiver.received == []
    delivery = Delivery.objects.get(recipient=endpoint.recipient)
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 1
    assert delivery.last_error == "webhook endpoint 'soc' is disabled"
    report = AuditEvent.objects.get(kind=EventKind.DELIVERY_FAILED)
    assert report.target_id == str(delivery.pk)


def test_an_endpoint_deleted_after_the_alert_dead_letters_its_delivery():
    endpoint, _ = make_endpoint("https://soc.example/hooks")
    lockout_alert()
    recipient = endpoint.recipient
    WebhookEndpoint.objects.all().delete()
    send_due_deliveries()
    delivery = Delivery.objects.get(recipient=recipient)
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error == f"webhook endpoint {recipient.split(':')[1]} no longer exists"


# --- Changes, audited; addresses checked ------------------------------------------------------

def test_changes_are_audited_by_field_and_a_change_to_nothing_records_nothing(admin_user):
    endpoint, _ = make_endpoint("https://soc.example/hooks/token-in-path")
    change_webhook_endpoint(endpoint, changes={"url": "https://soc.example/hooks/token-in-path"},
                            actor=admin_user)
    assert not endpoint_events("changed").exists()
    change_webhook_endpoint(endpoint, changes={"url": "https://new.example/x",
                                               "event_kinds": [EventKind.LOCKOUT]},
                            actor=admin_user)
    changed = endpoint_events("changed").get()
    assert changed.data["changed"] == ["url", "event_kinds"]
    assert changed.data["event_kinds"] == [EventKind.LOCKOUT]
    assert "token-in-path" not in json.dumps(changed.data)
    change_webhook_endpoint(endpoint, changes={"enabled": False}, actor=admin_user)
    change_webhook_endpoint(endpoint, changes={"enabled": True}, actor=admin_user)
    assert endpoint_events("disabled").count() == 1 and endpoint_events("enabled").count() == 1


@pytest.mark.parametrize(("url", "production", "allowed"), [
    ("https://soc.example/hooks", True, True),
    ("http://127.0.0.1:8080/hooks", False, True),
    ("http://localhost/hooks", False, True),
    ("http://[::1]:8080/hooks", False, True),
    ("http://127.0.0.1:8080/hooks", True, False),
    ("http://soc.example/hooks", False, False),
    ("https://user:password@soc.example/hooks", False, False),
    ("ftp://soc.example/hooks", False, False),
    ("https:///no-host", False, False),
    ("https://soc.example/" + "x" * 500, False, False),
])
def test_endpoint_addresses_are_https_or_loopback_outside_production(settings, url, production,
                                                                     allowed):
    settings.PRODUCTION = production
    if allowed:
        assert webhooks.check_url(url) == url
    else:
        with pytest.raises(InvalidEndpoint):
            webhooks.check_url(url)


def test_an_endpoint_with_a_bad_address_or_kind_is_not_created():
    with pytest.raises(InvalidEndpoint):
        make_endpoint("http://soc.example/hooks")
    with pytest.raises(InvalidEndpoint):
        make_endpoint("https://soc.example/hooks", event_kinds=["no.such_kind"])
    assert not WebhookEndpoint.objects.exists() and not AuditEvent.objects.exists()


# --- The environment's endpoint is checked at start-up ----------------------------------------

def load_settings(**overrides) -> subprocess.CompletedProcess:
    script = "import django; django.setup(); print('loaded')"
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                          env=production_env(**overrides), capture_output=True, text=True,
                          timeout=120)


def test_start_up_refuses_an_alert_webhook_secret_that_is_not_whsec():
    result = load_settings(ALERT_WEBHOOK_URL="https://soc.example/hooks",
                           ALERT_WEBHOOK_SECRET="an-old-style-shared-secret")
    assert result.returncode != 0
    assert "ALERT_WEBHOOK_SECRET must be a Standard Webhooks secret" in result.stderr


def test_start_up_refuses_plain_http_in_production_and_accepts_https_with_a_whsec_secret():
    refused = load_settings(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hooks",
                            ALERT_WEBHOOK_SECRET=webhooks.new_secret())
    assert refused.returncode != 0 and "ALERT_WEBHOOK_URL must be an https://" in refused.stderr
    loaded = load_settings(ALERT_WEBHOOK_URL="https://soc.example/hooks",
                           ALERT_WEBHOOK_SECRET=webhooks.new_secret())
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "loaded"

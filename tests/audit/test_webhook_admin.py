"""The admin's webhook endpoints: every save takes a fresh one-time code, the signing secret is
shown once (on creation and on "Rotate signing secret") and never again, and staff without the
right to change endpoints are refused."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from accounts.models import TOTPDevice
from audit.catalogue import EventKind
from audit.models import AuditEvent, WebhookEndpoint
from audit.webhooks import create_webhook_endpoint
from recovery.crypto import decrypt_field
from tests.conftest import current_totp, make_user, sign_in

pytestmark = pytest.mark.django_db

ADD = reverse("admin:audit_webhookendpoint_add")
CHANGELIST = reverse("admin:audit_webhookendpoint_changelist")


def staff(username: str, *codenames: str):
    user = make_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_webhookendpoint", *codenames]))
    return user


def fresh_code(user) -> str:
    return current_totp(TOTPDevice.objects.get(user=user), steps_ahead=1)


def endpoint_events(action: str):
    return AuditEvent.objects.filter(kind=EventKind.WEBHOOK_ENDPOINT_CHANGED,
                                     data__action=action)


def existing_endpoint() -> tuple[WebhookEndpoint, str]:
    endpoint = WebhookEndpoint(name="soc", url="https://soc.example/hooks")
    return endpoint, create_webhook_endpoint(endpoint, actor=None)


def rotate_post(client, endpoint, **extra):
    return client.post(CHANGELIST, {"action": "rotate_secret", "index": "0",
                                    "_selected_action": [endpoint.pk], **extra})


def test_adding_an_endpoint_with_a_fresh_code_shows_its_secret_once():
    tom = staff("tom", "add_webhookendpoint", "change_webhookendpoint")
    client = sign_in(Client(), tom)
    response = client.post(ADD, {"name": "soc", "url": "https://soc.example/hooks",
                                 "enabled": "on", "event_kinds": [EventKind.LOCKOUT],
                                 "code": fresh_code(tom)})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get()
    secret = decrypt_field(endpoint.secret_encrypted)
    assert secret.encode() in response.content
    assert endpoint.event_kinds == [EventKind.LOCKOUT]
    assert endpoint_events("created").get().actor_id == str(tom.pk)
    again = client.get(reverse("admin:audit_webhookendpoint_change", args=[endpoint.pk]))
    assert again.status_code == 200 and secret.encode() not in again.content


def test_adding_or_changing_an_endpoint_without_a_fresh_code_changes_nothing():
    tom = staff("tom", "add_webhookendpoint", "change_webhookendpoint")
    client = sign_in(Client(), tom)
    refused = client.post(ADD, {"name": "soc", "url": "https://soc.example/hooks",
                                "enabled": "on", "code": "000000"})
    assert refused.status_code == 200 and b"fresh one-time code" in refused.content
    assert not WebhookEndpoint.objects.exists()
    endpoint, _ = existing_endpoint()
    change = reverse("admin:audit_webhookendpoint_change", args=[endpoint.pk])
    refused = client.post(change, {"name": "soc", "url": "https://attacker.example/",
                                   "enabled": "on", "code": ""})
    assert refused.status_code == 200 and b"fresh one-time code" in refused.content
    assert WebhookEndpoint.objects.get().url == "https://soc.example/hooks"


def test_changing_an_endpoint_with_a_fresh_code_goes_through_the_service():
    tom = staff("tom", "change_webhookendpoint")
    client = sign_in(Client(), tom)
    endpoint, secret = existing_endpoint()
    change = reverse("admin:audit_webhookendpoint_change", args=[endpoint.pk])
    response = client.post(change, {"name": "soc", "url": "https://soc.example/hooks",
                                    "code": fresh_code(tom)})
    assert response.status_code == 302
    assert WebhookEndpoint.objects.get().enabled is False
    assert endpoint_events("disabled").get().actor_id == str(tom.pk)
    assert decrypt_field(WebhookEndpoint.objects.get().secret_encrypted) == secret


def test_an_address_that_is_not_https_is_refused_on_its_field():
    tom = staff("tom", "add_webhookendpoint")
    client = sign_in(Client(), tom)
    response = client.post(ADD, {"name": "soc", "url": "http://soc.example/hooks",
                                 "enabled": "on", "code": fresh_code(tom)})
    assert response.status_code == 200
    assert b"must start with https://" in response.content
    assert not WebhookEndpoint.objects.exists()


def test_rotation_is_refused_to_view_only_staff():
    endpoint, secret = existing_endpoint()
    vic = staff("vic")
    client = sign_in(Client(), vic)
    response = rotate_post(client, endpoint, post="yes", code=fresh_code(vic))
    assert response.status_code == 403
    assert decrypt_field(WebhookEndpoint.objects.get().secret_encrypted) == secret
    assert not endpoint_events("rotated").exists()


def test_rotation_asks_for_a_fresh_code_and_refuses_a_wrong_one():
    endpoint, secret = existing_endpoint()
    client = sign_in(Client(), staff("tom", "change_webhookendpoint"))
    asked = rotate_post(client, endpoint)
    assert asked.status_code == 200 and b'name="code"' in asked.content
    wrong = rotate_post(client, endpoint, post="yes", code="000000")
    assert wrong.status_code == 200 and b"fresh one-time code" in wrong.content
    assert decrypt_field(WebhookEndpoint.objects.get().secret_encrypted) == secret
    assert not endpoint_events("rotated").exists()


def test_rotation_with_a_fresh_code_shows_the_new_secret_once():
    endpoint, old = existing_endpoint()
    tom = staff("tom", "change_webhookendpoint")
    client = sign_in(Client(), tom)
    response = rotate_post(client, endpoint, post="yes", code=fresh_code(tom))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    rotated = WebhookEndpoint.objects.get()
    new = decrypt_field(rotated.secret_encrypted)
    assert new != old and new.encode() in response.content
    assert old.encode() not in response.content
    assert endpoint_events("rotated").get().actor_id == str(tom.pk)
    again = client.get(reverse("admin:audit_webhookendpoint_change", args=[rotated.pk]))
    assert new.encode() not in again.content and old.encode() not in again.content
    assert b"the previous secret also signs until" in again.content

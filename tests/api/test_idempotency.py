"""Idempotency-Key on POST (draft-ietf-httpapi-idempotency-key-header): a retried request
acts once and answers the same; another request under the same key is refused."""

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from api.models import IdempotencyKey
from audit import housekeeping
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from breakglass.models import Grant
from tests.api.conftest import call, problem

pytestmark = pytest.mark.django_db


def break_glass(client, token, key, reason="pager"):
    return call(client, "POST", "/break-glass", token,
                {"user": "mark", "group": "prod-db", "reason": reason},
                headers={"Idempotency-Key": key})


def deliveries() -> list[tuple]:
    return sorted(Delivery.objects.values_list("event_id", "channel", "recipient", "status"))


def test_a_retried_break_glass_with_the_same_key_activates_and_alerts_once(
        client, app_token, database, member, owner, reviewer):
    key = str(uuid.uuid4())
    first = break_glass(client, app_token, key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    send_due_deliveries()
    after_first = deliveries()
    channels = {channel for _, channel, _, _ in after_first}
    assert {Delivery.Channel.EMAIL, Delivery.Channel.FANOUT} <= channels, after_first
    mails = len(mail.outbox)

    again = break_glass(client, app_token, key)
    send_due_deliveries()

    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and again["Content-Type"] == first["Content-Type"]
    assert Grant.objects.count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_ACTIVATED).count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXTENDED).count() == 0
    assert deliveries() == after_first and len(mail.outbox) == mails


def test_without_a_key_a_second_post_acts_again(client, app_token, database, member):
    for _ in range(2):
        response = call(client, "POST", "/break-glass", app_token,
                        {"user": "mark", "group": "prod-db", "reason": "pager"})
        assert response.status_code == 201 and "Idempotent-Replayed" not in response
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXTENDED).count() == 1


def test_the_same_key_with_another_body_or_path_is_422(client, app_token, database, member):
    key = "retry-1"
    assert break_glass(client, app_token, key).status_code == 201
    problem(break_glass(client, app_token, key, reason="other words"), 422,
            "idempotency-key-reused")
    grant = Grant.objects.get()
    elsewhere = call(client, "POST", f"/grants/{grant.pk}/revoke", app_token, {"reason": "x"},
                     headers={"Idempotency-Key": key})
    problem(elsewhere, 422, "idempotency-key-reused")
    assert Grant.objects.get().status == Grant.Status.ACTIVE


def test_a_key_still_running_is_409(client, app_token, database, member):
    """A claim committed by a request that has not answered yet (here: one that died after
    claiming) makes a retry wait, never act a second time."""
    response = break_glass(client, app_token, "in-flight")
    claim = IdempotencyKey.objects.get()
    IdempotencyKey.objects.filter(pk=claim.pk).update(
        state=IdempotencyKey.State.IN_PROGRESS, response_body="", response_status=None)
    problem(break_glass(client, app_token, "in-flight"), 409, "idempotency-key-in-use")
    assert response.status_code == 201 and Grant.objects.count() == 1


def test_a_refused_request_releases_its_key(client, app_token, database, member, outsider):
    refused = call(client, "POST", "/break-glass", app_token,
                   {"user": outsider.username, "group": "prod-db", "reason": "pager"},
                   headers={"Idempotency-Key": "k"})
    problem(refused, 403, "forbidden")
    assert not IdempotencyKey.objects.exists()
    database.break_glass_users.add(outsider)
    again = call(client, "POST", "/break-glass", app_token,
                 {"user": outsider.username, "group": "prod-db", "reason": "pager"},
                 headers={"Idempotency-Key": "k"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again


def test_keys_are_per_application(client, app_token, database, member):
    from breakglass.models import Scope
    from breakglass.services.applications import create_application

    other = create_application("other", [Scope.BREAK_GLASS_WRITE], actor=None)[1]
    assert break_glass(client, app_token, "shared").status_code == 201
    second = break_glass(client, other, "shared")
    assert second.status_code == 201 and "Idempotent-Replayed" not in second
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXTENDED).count() == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\tin"])
def test_a_malformed_key_is_400_naming_the_header(client, app_token, database, member, key):
    response = call(client, "POST", "/break-glass", app_token,
                    {"user": "mark", "group": "prod-db", "reason": "pager"},
                    headers={"Idempotency-Key": key.encode().decode("latin-1")})
    body = problem(response, 400, "invalid-input")
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert body["errors"][0]["in"] == "header"
    assert not Grant.objects.exists()


def test_a_structured_field_string_key_is_the_same_key_unquoted(client, app_token, database,
                                                                member):
    assert break_glass(client, app_token, '"abc-123"').status_code == 201
    assert break_glass(client, app_token, "abc-123")["Idempotent-Replayed"] == "true"


def test_keys_expire_after_24_hours_and_housekeeping_removes_them(client, app_token, database,
                                                                  member):
    assert break_glass(client, app_token, "old").status_code == 201
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    fresh = break_glass(client, app_token, "old")
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert housekeeping.run()["idempotency_keys"] == 1
    assert not IdempotencyKey.objects.exists()

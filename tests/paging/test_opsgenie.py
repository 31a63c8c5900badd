"""Opsgenie's Webhook integration end to end, from its documented alert action data.

The bodies are Opsgenie's own examples ("Alert action data", Create and Acknowledge:
https://docs.opsgenie.com/docs/marid-alert-action-data, also at
https://support.atlassian.com/opsgenie/docs/opsgenie-edge-connector-alert-action-data/),
stored verbatim in payloads/opsgenie_*.json. Close is the documented Acknowledge body with
only its action and update time replaced.
Opsgenie signs nothing: the webhook sends the token in a custom Authorization header."""

import pytest
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Grant
from breakglass.services.break_glass import break_glass
from paging.models import ServiceLink, Source
from risk.models import Incident
from tests.paging.conftest import OPSGENIE_TOKEN, payload

pytestmark = pytest.mark.django_db

INCIDENT = "opsgenie:052652ac-5d1c-464a-812a-7dd18bbfba8c"
ACKNOWLEDGE = "opsgenie_acknowledge.json"


def close_body() -> bytes:
    return payload(ACKNOWLEDGE, **{'"action":"Acknowledge"': '"action":"Close"',
                                   "1420452224764002246": "1420452230000000000"})


def deliver(client, body: bytes, *, token: str | None = OPSGENIE_TOKEN,
            subscription: str = "operations"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.post(reverse("paging:opsgenie", args=[subscription]), body,
                       content_type="application/json", **headers)


def refusals(reason: str):
    return AuditEvent.objects.filter(kind=EventKind.INTEGRATION_WEBHOOK_REFUSED,
                                     data__reason=reason)


@pytest.fixture
def linked(armed):
    """Alerts tagged tag1 (as in the documented examples) arm the payments group."""
    link = ServiceLink.objects.create(source=Source.OPSGENIE, key="tag1")
    link.groups.add(armed)
    return link


def test_create_acknowledge_close_arms_and_then_ends_a_grant(client, opsgenie, linked, armed,
                                                             member):
    created = deliver(client, payload("opsgenie_create.json"))
    assert created.status_code == 200, created.content
    assert (created.json()["incident"], created.json()["status"]) == (INCIDENT, "open")
    incident = Incident.objects.get()
    # No priority in the documented alert: the subscription's default severity.
    assert (incident.title, incident.severity) == ("test alert", "sev3")
    assert list(incident.groups.all()) == [armed]
    assert AuditEvent.objects.get(kind=EventKind.INCIDENT_OPENED).actor_label == (
        "Opsgenie subscription Operations")
    grant = break_glass(armed, actor=member, reason="alert fired", incident=INCIDENT)

    acknowledged = deliver(client, payload(ACKNOWLEDGE))
    assert acknowledged.json()["status"] == "acknowledged"
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE

    closed = deliver(client, close_body())
    assert closed.status_code == 200, closed.content
    assert (closed.json()["status"], closed.json()["grants_ended"]) == ("resolved", 1)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED


def test_a_priority_in_the_alert_picks_the_severity(client, opsgenie):
    body = payload("opsgenie_create.json", **{'"tinyId":"23",': '"tinyId":"23","priority":"P2",'})
    assert deliver(client, body).json()["severity"] == "sev2"


@pytest.mark.parametrize("token", ["wrong-" + OPSGENIE_TOKEN, "", None])
def test_a_wrong_or_missing_token_is_refused_and_audited(client, opsgenie, token):
    response = deliver(client, payload("opsgenie_create.json"), token=token)
    assert response.status_code == 401
    refused = refusals("wrong token").get()
    assert refused.target_label == "Opsgenie subscription Operations"
    assert OPSGENIE_TOKEN not in str(refused.data)
    assert not Incident.objects.exists()


def test_a_pagerduty_subscription_does_not_take_opsgenie_calls(client, pagerduty):
    response = deliver(client, payload("opsgenie_create.json"), subscription="production")
    assert response.status_code == 401
    assert refusals("unknown subscription").count() == 1


def test_the_same_action_at_the_same_update_is_taken_once(client, opsgenie):
    body = payload("opsgenie_create.json")
    assert deliver(client, body).json()["result"] == "applied"
    assert deliver(client, body).json()["result"] == "duplicate"
    assert AuditEvent.objects.filter(kind=EventKind.INCIDENT_OPENED).count() == 1
    assert refusals("replayed").count() == 1


def test_an_action_breakglass_does_not_act_on_is_ignored(client, opsgenie):
    body = payload(ACKNOWLEDGE, **{'"action":"Acknowledge"': '"action":"AddNote"'})
    response = deliver(client, body)
    assert response.status_code == 202
    assert response.json() == {"result": "ignored", "event_type": "AddNote"}
    assert AuditEvent.objects.filter(kind=EventKind.INTEGRATION_EVENT_IGNORED).count() == 1
    assert not Incident.objects.exists()


def test_an_alert_without_its_id_is_400_and_audited(client, opsgenie):
    body = payload("opsgenie_create.json",
                   **{'"alertId":"052652ac-5d1c-464a-812a-7dd18bbfba8c",': ""})
    assert deliver(client, body).status_code == 400
    assert refusals("unparseable").count() == 1

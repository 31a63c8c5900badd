"""PagerDuty v3 webhooks end to end, from the documented example body.

The body is PagerDuty's own example webhook payload, from the V3 webhooks overview, section
"Webhook Payload" (developer.pagerduty.com; its source:
https://github.com/PagerDuty/developer-docs/blob/main/docs/webhooks/01-Overview.md), stored
verbatim in payloads/pagerduty_incident_priority_updated.json. The documentation gives that
one incident example (and the `incident` data type it carries for every incident.* event):
it has no separate triggered or resolved example. The triggered and resolved deliveries here
are that same body with only these strings replaced: the event type, the event id (each
delivery has its own), `occurred_at` (a fresh time, or the replay window would refuse it)
and, for resolved, the incident's status."""

import pytest
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Grant
from breakglass.services.break_glass import break_glass
from paging.models import PrioritySeverity, ReceivedEvent, ServiceLink, Source
from risk.models import Incident
from tests.paging.conftest import PAGERDUTY_SECRET, now_iso, pagerduty_signature, payload

pytestmark = pytest.mark.django_db

DOCUMENTED = "pagerduty_incident_priority_updated.json"
DOCUMENTED_ID = "5ac64822-4adc-4fda-ade0-410becf0de4f"
DOCUMENTED_TIME = "2020-10-02T18:45:22.169Z"
INCIDENT = "pagerduty:PGR0VU2"


def incident_event(event_type: str, event_id: str, *, status: str = "triggered",
                   occurred_at: str | None = None) -> bytes:
    replacements = {
        '"event_type": "incident.priority_updated"': f'"event_type": "{event_type}"',
        f'"id": "{DOCUMENTED_ID}"': f'"id": "{event_id}"',
        DOCUMENTED_TIME: occurred_at or now_iso(),
    }
    if status != "triggered":
        replacements['"status": "triggered"'] = f'"status": "{status}"'
    return payload(DOCUMENTED, **replacements)


def deliver(client, body: bytes, *, signature: str | None = None,
            subscription: str = "production"):
    return client.post(reverse("paging:pagerduty", args=[subscription]), body,
                       content_type="application/json",
                       HTTP_X_PAGERDUTY_SIGNATURE=(pagerduty_signature(body)
                                                   if signature is None else signature),
                       HTTP_USER_AGENT="PagerDuty-Webhook/V3.0")


def refusals(reason: str | None = None):
    events = AuditEvent.objects.filter(kind=EventKind.INTEGRATION_WEBHOOK_REFUSED)
    return events.filter(data__reason=reason) if reason else events


@pytest.fixture
def linked(armed):
    """The example's service (PF9KMXH, "API Service") arms the payments group."""
    link = ServiceLink.objects.create(source=Source.PAGERDUTY, key="PF9KMXH")
    link.groups.add(armed)
    return link


def test_documented_triggered_then_resolved_arm_and_then_end_a_grant(client, pagerduty,
                                                                     linked, armed, member):
    opened = deliver(client, incident_event("incident.triggered", "evt-triggered"))
    assert opened.status_code == 200, opened.content
    assert opened.json() == {"result": "applied", "event_type": "incident.triggered",
                             "incident": INCIDENT, "status": "open", "severity": "sev1",
                             "changed": [], "grants_ended": 0}
    incident = Incident.objects.get(external_id=INCIDENT)
    assert (incident.title, incident.url) == ("A little bump in the road",
                                              "https://acme.pagerduty.com/incidents/PGR0VU2")
    assert list(incident.groups.all()) == [armed]
    event = AuditEvent.objects.get(kind=EventKind.INCIDENT_OPENED)
    assert (event.actor_type, event.actor_label) == ("application",
                                                    "PagerDuty subscription Production")

    grant = break_glass(armed, actor=member, reason="card payments fail", incident=INCIDENT)
    assert grant.status == Grant.Status.ACTIVE and grant.incident_record == incident

    resolved = deliver(client, incident_event("incident.resolved", "evt-resolved",
                                              status="resolved"))
    assert resolved.status_code == 200, resolved.content
    assert (resolved.json()["status"], resolved.json()["grants_ended"]) == ("resolved", 1)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    revoked = AuditEvent.objects.get(kind=EventKind.GRANT_REVOKED, target_id=str(grant.pk))
    assert revoked.actor_label == "PagerDuty subscription Production"
    assert revoked.data["cause"] == {"incident": INCIDENT, "incident_id": incident.pk}


def test_acknowledged_and_reopened_move_the_status(client, pagerduty):
    deliver(client, incident_event("incident.triggered", "evt-1"))
    acknowledged = deliver(client, incident_event("incident.acknowledged", "evt-2",
                                                  status="acknowledged"))
    assert acknowledged.json()["status"] == "acknowledged"
    deliver(client, incident_event("incident.resolved", "evt-3", status="resolved"))
    reopened = deliver(client, incident_event("incident.reopened", "evt-4"))
    assert reopened.json()["status"] == "open"
    assert Incident.objects.get().status == Incident.Status.OPEN


def test_the_documented_priority_update_takes_its_severity_from_the_table(client, pagerduty):
    row = PrioritySeverity.objects.get(source=Source.PAGERDUTY, priority="P1")
    row.severity = "sev2"
    row.save()
    response = deliver(client, incident_event("incident.priority_updated", "evt-p1"))
    assert response.status_code == 200, response.content
    assert Incident.objects.get().severity == "sev2"


def test_an_incident_without_priority_gets_the_subscriptions_default(client, pagerduty):
    pagerduty.default_severity = "sev4"
    pagerduty.save()
    body = incident_event("incident.triggered", "evt-np").replace(
        b'"summary": "P1"', b'"summary": "P9"')
    assert deliver(client, body).json()["severity"] == "sev4"


def test_a_wrong_signature_is_refused_and_audited(client, pagerduty):
    body = incident_event("incident.triggered", "evt-forged")
    response = deliver(client, body, signature=pagerduty_signature(body, "a guessed secret"))
    assert response.status_code == 401
    assert response.json() == {"detail": "The signature or token was refused."}
    assert not Incident.objects.exists() and not ReceivedEvent.objects.exists()
    refused = refusals().get()
    assert refused.data["reason"] == "wrong signature"
    assert (refused.outcome, refused.target_label) == ("denied",
                                                      "PagerDuty subscription Production")
    assert PAGERDUTY_SECRET not in str(refused.data) and "v1=" not in str(refused.data)


def test_a_body_changed_after_signing_is_refused(client, pagerduty):
    body = incident_event("incident.triggered", "evt-tampered")
    signature = pagerduty_signature(body)
    response = deliver(client, body.replace(b"A little bump", b"A large bump"),
                       signature=signature)
    assert response.status_code == 401
    assert refusals("wrong signature").count() == 1


def test_any_of_several_signatures_passes_while_the_secret_rotates(client, pagerduty):
    body = incident_event("incident.triggered", "evt-rotating")
    header = f"{pagerduty_signature(body, 'the old secret')},{pagerduty_signature(body)}"
    assert deliver(client, body, signature=header).status_code == 200
    assert Incident.objects.count() == 1


def test_the_documented_example_as_published_is_outside_the_replay_window(client, pagerduty):
    """Signed correctly, but it occurred in 2020."""
    body = payload(DOCUMENTED)
    response = deliver(client, body)
    assert response.status_code == 401
    assert response.json() == {"detail": "The event is outside the replay window."}
    assert refusals("stale").count() == 1
    assert not Incident.objects.exists()


def test_a_replay_just_past_the_window_is_refused(client, pagerduty, settings):
    settings.PAGING_REPLAY_WINDOW_SECONDS = 300
    late = incident_event("incident.triggered", "evt-late", occurred_at=now_iso(301))
    assert deliver(client, late).status_code == 401
    early = incident_event("incident.triggered", "evt-early", occurred_at=now_iso(-301))
    assert deliver(client, early).status_code == 401
    assert refusals("stale").count() == 2
    within = incident_event("incident.triggered", "evt-within", occurred_at=now_iso(290))
    assert deliver(client, within).status_code == 200


def test_the_same_event_id_twice_changes_nothing_the_second_time(client, pagerduty):
    body = incident_event("incident.triggered", "evt-once")
    assert deliver(client, body).status_code == 200
    incident = Incident.objects.get()
    incident.status = Incident.Status.RESOLVED  # so a second taking would show
    incident.save(update_fields=["status"])
    again = deliver(client, body)
    assert again.status_code == 200  # a 4xx would count against the subscription at PagerDuty
    assert again.json() == {"result": "duplicate", "event_type": "incident.triggered"}
    assert Incident.objects.get().status == Incident.Status.RESOLVED
    assert AuditEvent.objects.filter(kind=EventKind.INCIDENT_OPENED).count() == 1
    assert refusals("replayed").count() == 1


def test_an_unknown_event_type_is_accepted_and_audited_once(client, pagerduty):
    """PagerDuty's documented service.updated example, delivered twice."""
    body = payload("pagerduty_service_updated.json",
                   **{"2021-03-02T13:35:11.682Z": now_iso()})
    first, second = deliver(client, body), deliver(client, body)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == {"result": "ignored", "event_type": "service.updated"}
    assert second.json() == {"result": "duplicate", "event_type": "service.updated"}
    ignored = AuditEvent.objects.filter(kind=EventKind.INTEGRATION_EVENT_IGNORED)
    assert ignored.count() == 1
    assert ignored.get().data["event_key"] == "01BRB6ZP4M6T8ZG4X6BP63ZB9O"
    assert not refusals().exists() and not Incident.objects.exists()


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"event": "text"}',
    b'{"event": {"id": "e", "event_type": "incident.triggered", "occurred_at": "yesterday"}}',
])
def test_a_signed_body_that_is_not_a_pagerduty_event_is_400_and_audited(client, pagerduty,
                                                                         body):
    response = deliver(client, body)
    assert response.status_code == 400
    assert refusals("unparseable").count() == 1
    assert not Incident.objects.exists()


def test_an_unknown_subscription_is_answered_like_a_wrong_signature(client, pagerduty):
    body = incident_event("incident.triggered", "evt-elsewhere")
    response = deliver(client, body, subscription="staging")
    assert response.status_code == 401
    assert response.json() == {"detail": "The signature or token was refused."}
    refused = refusals("unknown subscription").get()
    assert refused.data["subscription"] == "staging" and refused.target_id == ""


def test_a_disabled_subscription_is_refused(client, pagerduty):
    pagerduty.enabled = False
    pagerduty.save()
    response = deliver(client, incident_event("incident.triggered", "evt-off"))
    assert response.status_code == 401
    assert refusals("subscription disabled").count() == 1


def test_only_post_is_answered(client, pagerduty):
    response = client.get(reverse("paging:pagerduty", args=["production"]))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json() == {"detail": "Only POST is allowed here."}


def test_a_body_over_the_limit_is_not_read(client, pagerduty, settings):
    settings.PAGING_MAX_BODY_BYTES = 1024
    body = incident_event("incident.triggered", "evt-big").replace(
        b'"title": "A little bump in the road"', b'"title": "' + b"x" * 2000 + b'"')
    response = deliver(client, body)
    assert response.status_code == 413
    assert refusals("too large").count() == 1


def test_refusals_from_one_address_are_throttled(client, pagerduty, settings):
    settings.PAGING_REFUSAL_LIMIT = 3
    body = incident_event("incident.triggered", "evt-flood")
    statuses = [deliver(client, body, signature="v1=00").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert [event.data["reason"] for event in refusals().order_by("sequence")] == [
        "wrong signature", "wrong signature", "throttled"]
    # Even a correct delivery waits out the minute from that address.
    assert deliver(client, body).status_code == 429
    assert not Incident.objects.exists()


def test_a_longer_slug_does_not_reach_the_subscription_it_starts_with(client, pagerduty):
    pagerduty.slug = "p" * 50
    pagerduty.save()
    body = incident_event("incident.triggered", "evt-prefix")
    assert deliver(client, body, subscription="p" * 51).status_code == 401
    assert refusals("unknown subscription").count() == 1
    assert deliver(client, body, subscription="p" * 50).status_code == 200


def test_a_copy_taken_without_a_request_is_still_audited_as_a_replay(pagerduty):
    """The service is not tied to the web door: a copy replayed from elsewhere is refused too."""
    from paging.payloads import read_pagerduty
    from paging.services import receive_event

    event = read_pagerduty(incident_event("incident.triggered", "evt-direct"))
    assert receive_event(pagerduty, event).result == "applied"
    assert receive_event(pagerduty, event).result == "duplicate"
    assert refusals("replayed").get().ip == ""

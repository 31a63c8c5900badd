"""Incidents as triggers, end to end through the API (SPEC §2.7): an open incident arms a
group, break glass names it, resolving it ends the grants opened under it (once), and bad input
is a 400 naming the field."""

import json

import pytest

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from breakglass.models import Grant, Group, Scope
from breakglass.services.applications import create_application
from breakglass.services.errors import GrantError
from breakglass.services.requests import approve_request, request_access
from risk.models import Incident

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(db) -> str:
    return create_application(
        "pager", [Scope.INCIDENTS_WRITE, Scope.BREAK_GLASS_WRITE], actor=None)[1]


@pytest.fixture
def armed(owner, member) -> Group:
    group = Group.objects.create(name="Payments", slug="payments", armed_by_incident=True)
    group.owners.add(owner)
    group.break_glass_users.add(member)
    return group


@pytest.fixture
def keeper(owner, member) -> Group:
    """A group whose grants outlive the incident."""
    group = Group.objects.create(name="Ledger", slug="ledger", armed_by_incident=True,
                                 end_grants_on_resolve=False)
    group.owners.add(owner)
    group.break_glass_users.add(member)
    return group


def post(client, token, path, body):
    return client.post(f"/api/v1{path}", json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}")


def incident(client, token, **body):
    return post(client, token, "/incidents", {"severity": "sev2", **body})


def break_glass(client, token, user, group, **body):
    return post(client, token, "/break-glass",
                {"user": user.username, "group": group.slug, "reason": "card payments fail",
                 **body})


def events(kind) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=kind).order_by("sequence"))


def test_an_incident_arms_the_group_and_resolving_it_ends_the_grant(client, token, armed,
                                                                    keeper, member, owner):
    member.mobile = "+15555550123"
    member.save()
    opened = incident(client, token, external_id="PD-42", title="Card payments fail",
                      groups=["payments", "ledger"])
    assert opened.status_code == 201, opened.content
    assert (opened.json()["status"], opened.json()["groups"]) == ("open", ["ledger", "payments"])

    refused = break_glass(client, token, member, armed)
    assert refused.status_code == 403
    assert "only during an open incident linked to it" in refused.json()["detail"]
    assert not Grant.objects.exists()
    assert len(events(EventKind.GRANT_REFUSED)) == 1

    response = break_glass(client, token, member, armed, incident="PD-42")
    assert response.status_code == 201, response.content
    grant = Grant.objects.get(pk=response.json()["id"])
    assert (grant.status, grant.incident, grant.severity) == ("active", "PD-42", "sev2")
    assert grant.incident_record == Incident.objects.get(external_id="PD-42")
    kept = Grant.objects.get(pk=break_glass(client, token, member, keeper,
                                            incident="PD-42").json()["id"])
    send_due_deliveries()  # the activation alerts, out of the way
    revoked_before = Delivery.objects.filter(event__kind=EventKind.GRANT_REVOKED).count()
    assert revoked_before == 0

    resolved = incident(client, token, external_id="PD-42", status="resolved")
    assert resolved.status_code == 200, resolved.content
    assert (resolved.json()["status"], resolved.json()["grants_ended"]) == ("resolved", 1)
    assert resolved.json()["resolved_at"]
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED and grant.ended_at is not None
    assert "PD-42" in grant.end_reason
    kept.refresh_from_db()
    assert kept.status == Grant.Status.ACTIVE  # its group keeps access past the incident

    [revocation] = events(EventKind.GRANT_REVOKED)
    assert revocation.target_id == str(grant.pk)
    assert revocation.data["cause"]["incident"] == "PD-42"
    assert "PD-42" in revocation.reason
    assert revocation.actor_type == "application"
    assert len(events(EventKind.INCIDENT_RESOLVED)) == 1

    send_due_deliveries()
    to_holder = set(Delivery.objects.filter(event=revocation).exclude(channel="fanout")
                    .values_list("channel", "recipient"))
    assert ("email", member.email) in to_holder
    assert ("sms", member.mobile) in to_holder
    assert ("email", owner.email) in to_holder  # the owners hear of it too
    body = Delivery.objects.get(event=revocation, recipient=member.email).body
    assert "Payments" in body

    # Resolving again changes nothing and ends nothing.
    again = incident(client, token, external_id="PD-42", status="resolved")
    assert again.status_code == 200, again.content
    assert (again.json()["grants_ended"], again.json()["changed"]) == (0, [])
    assert len(events(EventKind.GRANT_REVOKED)) == 1
    assert len(events(EventKind.INCIDENT_RESOLVED)) == 1
    kept.refresh_from_db()
    assert kept.status == Grant.Status.ACTIVE

    # A resolved incident arms nothing.
    late = break_glass(client, token, member, armed, incident="PD-42")
    assert late.status_code == 400 and late.json()["detail"].startswith("incident")
    assert Grant.objects.filter(group=armed, status="active").count() == 0


def test_the_incident_severity_picks_the_cell(client, token, owner, member):
    group = Group.objects.create(name="Vault", slug="vault", sensitivity="critical",
                                 armed_by_incident=True)
    group.break_glass_users.add(member)
    assert incident(client, token, external_id="OG-1", severity="sev4",
                    groups=["vault"]).status_code == 201
    # critical × SEV4 refuses self-service; a severity typed beside the incident is ignored.
    refused = break_glass(client, token, member, group, incident="OG-1", severity="sev1")
    assert refused.status_code == 403 and "critical × SEV4" in refused.json()["detail"]
    assert events(EventKind.GRANT_REFUSED)[-1].data["risk"]["cell"] == "critical × SEV4"


def test_an_unlinked_open_incident_does_not_arm_the_group(client, token, armed, member):
    assert incident(client, token, external_id="PD-9").status_code == 201  # linked to nothing
    refused = break_glass(client, token, member, armed, incident="PD-9")
    assert refused.status_code == 403
    assert not Grant.objects.exists()


def test_a_grant_outside_the_incident_survives_its_resolution(client, token, member, owner):
    group = Group.objects.create(name="Reports", slug="reports")
    group.break_glass_users.add(member)
    assert incident(client, token, external_id="PD-5", groups=["reports"]).status_code == 201
    plain = break_glass(client, token, member, group)  # not armed: no incident needed
    assert plain.status_code == 201
    resolved = incident(client, token, external_id="PD-5", status="closed")
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert resolved.json()["grants_ended"] == 0
    assert Grant.objects.get().status == Grant.Status.ACTIVE


def test_an_unknown_incident_in_break_glass_is_400(client, token, armed, member):
    response = break_glass(client, token, member, armed, incident="PD-404")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("incident")
    assert "PD-404" in response.json()["detail"]
    assert not Grant.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"external_id": "PD-1", "severity": "sev5"}, "severity"),
    ({"external_id": "PD-1", "severity": ""}, "severity"),
    ({"external_id": "PD-1", "severity": "sev1", "groups": ["no-such-group"]}, "groups"),
    ({"external_id": "PD-1", "severity": "sev1", "policies": ["no-such-policy"]}, "policies"),
    ({"severity": "sev1"}, "external_id"),
    ({"external_id": "", "severity": "sev1"}, "external_id"),
    ({"external_id": "   ", "severity": "sev1"}, "external_id"),
    ({"external_id": "x" * 201, "severity": "sev1"}, "external_id"),
    ({"external_id": "PD-1"}, "severity"),
    ({"external_id": "PD-1", "severity": "sev1", "status": "sleeping"}, "status"),
    ({"external_id": "PD-1", "severity": "sev1", "url": "ftp://pager/1"}, "url"),
    ({"external_id": "PD-1", "severity": "sev1", "groups": "payments"}, "groups"),
])
def test_bad_incident_input_is_400_naming_the_field(client, token, armed, body, field):
    response = post(client, token, "/incidents", body)
    assert response.status_code == 400, (response.status_code, response.content[:500])
    assert response.json()["detail"].startswith(field), response.json()
    assert not Incident.objects.exists()


def test_a_bad_update_leaves_the_incident_as_it_was(client, token, armed):
    assert incident(client, token, external_id="PD-3", groups=["payments"]).status_code == 201
    response = incident(client, token, external_id="PD-3", groups=["payments", "nope"],
                        status="resolved")
    assert response.status_code == 400 and response.json()["detail"].startswith("groups")
    stored = Incident.objects.get()
    assert stored.status == Incident.Status.OPEN
    assert list(stored.groups.values_list("slug", flat=True)) == ["payments"]


def test_incidents_need_their_scope(client, armed):
    other = create_application("reader", [Scope.BREAK_GLASS_WRITE], actor=None)[1]
    response = incident(client, other, external_id="PD-1")
    assert response.status_code == 403 and "incidents:write" in response.json()["detail"]
    assert incident(client, "bg_nope_nope", external_id="PD-1").status_code == 401
    assert not Incident.objects.exists()


def test_no_grant_becomes_active_under_a_resolved_incident(client, token, owner, member):

    group = Group.objects.create(name="Reports", slug="reports", requestable=True)
    group.owners.add(owner)
    assert incident(client, token, external_id="PD-8", groups=["reports"]).status_code == 201
    pending = request_access(group, actor=member, minutes=60, reason="r",
                                             incident="PD-8")
    assert incident(client, token, external_id="PD-8", status="resolved").status_code == 200
    pending.refresh_from_db()
    assert pending.status == "lapsed" and "PD-8 was resolved" in pending.comment
    with pytest.raises(GrantError, match="lapsed"):
        approve_request(pending, actor=owner)
    assert not Grant.objects.filter(status=Grant.Status.ACTIVE,
                                    incident_record__status=Incident.Status.RESOLVED).exists()

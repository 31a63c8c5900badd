"""One function per grant transition (Grant.TRANSITIONS): each performs its move with its one
audit kind, and refuses every move the table forbids, leaving the grant and the audit trail
as they were. Every state is reached through the services, as the doors reach it."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from breakglass.models import Grant, Group
from breakglass.services import grants
from breakglass.services.break_glass import break_glass
from breakglass.services.errors import InvalidInput, TransitionRefused
from breakglass.services.requests import (
    approve_request,
    deny_request,
    lapse_due_requests,
    request_access,
    request_extension,
)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

Status = Grant.Status

# The one function for each move of the table, called the way its doors call it.
MOVES = {
    (Status.REQUESTED, Status.ACTIVE): lambda grant: grants.activate_grant(
        grant, actor=None, duration=timedelta(hours=1)),
    (Status.REQUESTED, Status.DENIED): lambda grant: grants.deny_requested_grant(
        grant, actor=None, reason="no", cause={}),
    (Status.REQUESTED, Status.LAPSED): lambda grant: grants.lapse_requested_grant(
        grant, reason="too late", cause={}),
    (Status.ACTIVE, Status.EXPIRED): lambda grant: grants.expire_grant(grant),
    (Status.ACTIVE, Status.REVOKED): lambda grant: grants.revoke_grant(
        grant, actor=None, reason="done"),
}
KINDS = {Status.ACTIVE: EventKind.GRANT_ACTIVATED, Status.DENIED: EventKind.GRANT_DENIED,
         Status.LAPSED: EventKind.GRANT_LAPSED, Status.EXPIRED: EventKind.GRANT_EXPIRED,
         Status.REVOKED: EventKind.GRANT_REVOKED}


@pytest.fixture
def staging(owner, member):
    group = Group.objects.create(name="Staging", slug="staging", requestable=True,
                                 request_expiry_minutes=15)
    group.owners.add(owner, make_user("second-owner"))
    group.break_glass_users.add(member)
    return group


def in_status(status: str, group: Group, holder, owner) -> Grant:
    """A grant of `holder` brought to `status` through the services."""
    def requested():
        return request_access(group, actor=holder, minutes=60, reason="deploy").grant

    if status == Status.REQUESTED:
        return requested()
    if status == Status.DENIED:
        grant = requested()
        deny_request(grant.requests.get(), actor=owner, comment="not now")
    elif status == Status.LAPSED:
        grant = requested()
        request = grant.requests.get()
        request.expires_at = timezone.now() - timedelta(seconds=1)  # time passing
        request.save(update_fields=["expires_at"])
        assert lapse_due_requests() == 1
    else:
        grant = break_glass(group, actor=holder, reason="outage")
        if status == Status.REVOKED:
            grants.revoke_grant(grant, actor=holder, reason="done")
        elif status == Status.EXPIRED:
            Grant.objects.filter(pk=grant.pk).update(  # time passing
                expires_at=timezone.now() - timedelta(seconds=1))
            assert grants.expire_grant(grant) is True
    grant.refresh_from_db()
    assert grant.status == status
    return grant


def test_every_move_of_the_table_has_its_one_function():
    table = {(start, end) for start, ends in Grant.TRANSITIONS.items() for end in ends}
    assert table == set(MOVES)


@pytest.mark.parametrize("move", sorted(MOVES), ids=lambda move: "-".join(move))
def test_each_function_makes_its_move_with_its_audit_kind(move, staging, member, owner):
    start, end = move
    grant = in_status(start, staging, member, owner)
    if end == Status.EXPIRED:
        Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now())  # time passing
    before = AuditEvent.objects.count()
    MOVES[move](grant)
    grant.refresh_from_db()
    assert grant.status == end
    new_kinds = list(AuditEvent.objects.order_by("sequence").values_list("kind", flat=True)
                     [before:])
    assert new_kinds == [KINDS[end]]


FORBIDDEN = [(status, move) for status in Status.values for move in sorted(MOVES)
             if move[1] not in Grant.TRANSITIONS[status]]


@pytest.mark.parametrize(("status", "move"), FORBIDDEN,
                         ids=lambda value: value if isinstance(value, str) else "-".join(value))
def test_each_function_refuses_a_move_the_table_forbids(status, move, staging, member, owner):
    grant = in_status(status, staging, member, owner)
    before = AuditEvent.objects.count()
    with pytest.raises(TransitionRefused):
        MOVES[move](grant)
    grant.refresh_from_db()
    assert grant.status == status
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize("status", [Status.REQUESTED, Status.EXPIRED, Status.REVOKED,
                                    Status.DENIED, Status.LAPSED])
def test_only_active_access_is_extended(status, staging, member, owner):
    grant = in_status(status, staging, member, owner)
    with pytest.raises(TransitionRefused):
        grants.extend_grant(grant, actor=None, until=timezone.now() + timedelta(hours=1))
    assert Grant.objects.get(pk=grant.pk).status == status


def test_expiry_before_the_instant_does_nothing(staging, member, owner):
    grant = in_status(Status.ACTIVE, staging, member, owner)
    assert grants.expire_grant(grant) is False
    assert Grant.objects.get(pk=grant.pk).status == Status.ACTIVE


# --- Extension by approval -------------------------------------------------------------------

def test_an_approved_extension_runs_from_the_approval_and_tells_the_owners(staging, member,
                                                                         owner):
    second = staging.owners.exclude(pk=owner.pk).get()
    second.email = "second@example.org"
    second.save()
    grant = request_access(staging, actor=member, minutes=60, reason="deploy").grant
    approve_request(grant.requests.get(), actor=owner)
    grant.refresh_from_db()
    ends_before = grant.expires_at
    extension = request_extension(grant, actor=member, minutes=120, reason="migration slow")
    approved_at = timezone.now()
    approve_request(extension, actor=owner)
    grant.refresh_from_db()
    # Two hours from the approval, not two hours added to what was left.
    assert approved_at + timedelta(hours=2) <= grant.expires_at
    assert grant.expires_at <= timezone.now() + timedelta(hours=2)
    assert grant.expires_at < ends_before + timedelta(hours=2)
    event = AuditEvent.objects.get(kind=EventKind.GRANT_EXTENDED)
    assert event.target_id == str(grant.pk)
    assert event.data["previous_expires_at"] == ends_before.isoformat()
    assert event.data["expires_at"] == grant.expires_at.isoformat()
    assert event.reason == "migration slow"
    assert AuditEvent.objects.filter(kind=EventKind.REQUEST_APPROVED,
                                     target_id=str(extension.pk)).count() == 1
    send_due_deliveries()
    told = set(Delivery.objects.filter(event=event, channel="email")
               .values_list("recipient", flat=True))
    assert told == {owner.email, second.email}
    body = Delivery.objects.get(event=event, recipient=owner.email).body
    assert "extended" in body and "migration slow" in body


def test_an_extension_shorter_than_the_time_left_is_refused(staging, member, owner):
    grant = request_access(staging, actor=member, minutes=240, reason="deploy").grant
    approve_request(grant.requests.get(), actor=owner)
    grant.refresh_from_db()
    with pytest.raises(InvalidInput) as refused:
        request_extension(grant, actor=member, minutes=15, reason="a bit more")
    assert refused.value.field == "minutes" and "time left" in str(refused.value)
    assert not grant.requests.filter(kind="extension").exists()


def test_an_extension_never_shortens_access_nor_reminds_twice(staging, member, owner):
    grant = request_access(staging, actor=member, minutes=240, reason="deploy").grant
    approve_request(grant.requests.get(), actor=owner)
    grant.refresh_from_db()
    ends_before, reminded = grant.expires_at, timezone.now()
    Grant.objects.filter(pk=grant.pk).update(reminded_at=reminded)  # the reminder went out
    send_due_deliveries()
    grants.extend_grant(grant, actor=owner, until=timezone.now() + timedelta(minutes=15))
    grant.refresh_from_db()
    assert (grant.expires_at, grant.reminded_at) == (ends_before, reminded)
    event = AuditEvent.objects.get(kind=EventKind.GRANT_EXTENDED)
    assert event.data["unchanged"] is True
    send_due_deliveries()
    assert not Delivery.objects.filter(event=event).exclude(channel="fanout").exists()


def test_the_grant_page_tells_the_requests_decision_and_what_it_gave(staging, member, owner,
                                                                     verified_client):
    access_request = request_access(staging, actor=member, minutes=60, reason="deploy")
    approve_request(access_request, actor=owner, comment="go ahead")
    send_due_deliveries()
    page = verified_client(member).get(reverse("breakglass:grant-timeline",
                                               args=[access_request.grant_id]))
    text = page.content.decode()
    assert page.status_code == 200
    approved = text.index(EventKind.REQUEST_APPROVED.label)
    assert approved < text.index(EventKind.GRANT_ACTIVATED.label)
    assert member.email in text[approved:]  # the requester's "approved" mail, delivered

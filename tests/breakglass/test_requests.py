"""Access requests through their services: ask, approve by distinct owners, deny, withdraw,
lapse, auto-approval, extensions (SPEC §2.3)."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from audit.services import verify_trail
from breakglass.access import decide
from breakglass.models import AccessRequest, Grant, Group
from breakglass.services.break_glass import break_glass
from breakglass.services.errors import GrantError, InvalidInput, RequestRefused
from breakglass.services.grants import revoke_grant, send_expiry_reminders
from breakglass.services.requests import (
    approve_request,
    deny_request,
    lapse_due_requests,
    request_access,
    request_extension,
    set_request_settings,
    withdraw_request,
)
from tests.breakglass.helpers import open_incident
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staging(owner):
    group = Group.objects.create(name="Staging", slug="staging", requestable=True)
    group.owners.add(owner)
    return group


@pytest.fixture
def second_owner(staging):
    bob = make_user("bob")
    staging.owners.add(bob)
    return bob


def sent() -> list:
    """The mail the relay hands over (tests run inside a transaction, so nothing nudges it)."""
    send_due_deliveries()
    return mail.outbox


def kinds() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("kind", flat=True))


def ask(group, user, minutes=120, **fields):
    return request_access(group, actor=user, minutes=minutes,
                                          reason=fields.pop("reason", "deploy a fix"), **fields)


def test_a_request_waits_then_one_approval_gives_access_for_the_chosen_time(
        staging, owner, member):
    access_request = ask(staging, member, minutes=90)
    grant = access_request.grant
    assert (access_request.status, grant.status) == ("pending", "requested")
    assert not decide(member, staging).allowed
    assert [m.to for m in sent()] == [[owner.email]]  # the owners are alerted
    assert "/requests/" in mail.outbox[0].body

    later = timezone.now()
    approve_request(access_request, actor=owner, comment="ok")
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE
    # The clock starts at approval, not at the request.
    assert grant.activated_at >= later
    assert grant.expires_at - grant.activated_at == timedelta(minutes=90)
    assert decide(member, staging).via == "grant"
    assert kinds() == [EventKind.REQUEST_CREATED, EventKind.REQUEST_APPROVED,
                       EventKind.GRANT_ACTIVATED]
    assert "approved" in sent()[-1].subject and mail.outbox[-1].to == [member.email]
    assert verify_trail().intact


def test_nobody_approves_their_own_request_and_an_owner_needs_another_owner(
        staging, owner, second_owner):
    access_request = ask(staging, owner)
    with pytest.raises(RequestRefused, match="your own request"):
        approve_request(access_request, actor=owner)
    approve_request(access_request, actor=second_owner)
    access_request.refresh_from_db()
    assert access_request.status == "approved"


def test_two_approvals_are_two_distinct_owners(staging, owner, second_owner, member):
    staging.approvals_needed = 2
    staging.save()
    access_request = ask(staging, member)
    approve_request(access_request, actor=owner)
    with pytest.raises(GrantError, match="already approved"):
        approve_request(access_request, actor=owner)
    assert Grant.objects.get(pk=access_request.grant_id).status == "requested"
    approve_request(access_request, actor=second_owner)
    assert Grant.objects.get(pk=access_request.grant_id).status == "active"
    assert kinds().count(EventKind.REQUEST_APPROVAL) == 1


def test_only_owners_decide(staging, outsider, member, reviewer):
    access_request = ask(staging, member)
    for stranger in (outsider, reviewer):
        with pytest.raises(RequestRefused, match="Only the owners"):
            approve_request(access_request, actor=stranger)


def test_a_decided_request_cannot_be_decided_again(staging, owner, second_owner, member):
    access_request = ask(staging, member)
    deny_request(access_request, actor=owner, comment="use staging-2")
    grant = Grant.objects.get(pk=access_request.grant_id)
    assert (grant.status, grant.end_reason) == ("denied", "use staging-2")
    assert "denied" in sent()[-1].subject
    with pytest.raises(GrantError, match="is denied"):
        approve_request(access_request, actor=second_owner)


def test_denying_needs_a_comment(staging, owner, member):
    access_request = ask(staging, member)
    with pytest.raises(InvalidInput) as refused:
        deny_request(access_request, actor=owner, comment=" ")
    assert refused.value.field == "comment"


@pytest.mark.parametrize(("minutes", "field"), [(14, "minutes"), (8 * 60 + 1, "minutes"),
                                                (None, "minutes")])
def test_a_duration_outside_the_groups_limits_is_refused(staging, member, minutes, field):
    with pytest.raises(InvalidInput) as refused:
        ask(staging, member, minutes=minutes)
    assert refused.value.field == field
    assert not Grant.objects.exists() and not AccessRequest.objects.exists()


def test_reason_and_incident_follow_the_group_settings(staging, member):
    staging.request_incident_required = True
    staging.save()
    open_incident("INC-1", "sev3")
    with pytest.raises(InvalidInput, match="incident"):
        ask(staging, member)
    with pytest.raises(InvalidInput, match="reason"):
        ask(staging, member, reason="", incident="INC-1")
    assert ask(staging, member, incident="INC-1").incident == "INC-1"


def test_a_group_that_takes_no_requests_refuses(staging, member):
    staging.requestable = False
    staging.save()
    with pytest.raises(RequestRefused):
        ask(staging, member)


def test_one_pending_request_per_user_and_group_and_none_while_active(staging, owner, member):
    first = ask(staging, member)
    with pytest.raises(GrantError, match="already have a pending request"):
        ask(staging, member)
    approve_request(first, actor=owner)
    with pytest.raises(GrantError, match="request an extension"):
        ask(staging, member)


def test_a_pending_request_lapses_at_its_expiry_without_a_worker_and_once_with_it(
        staging, owner, member, second_owner):
    access_request = ask(staging, member)
    AccessRequest.objects.filter(pk=access_request.pk).update(
        expires_at=timezone.now() - timedelta(milliseconds=1))  # time travel
    access_request.refresh_from_db()
    assert access_request.effective_status() == "lapsed"  # shown as lapsed with no worker
    with pytest.raises(GrantError, match="lapsed"):
        approve_request(access_request, actor=owner)
    assert Grant.objects.get(pk=access_request.grant_id).status == "lapsed"
    assert lapse_due_requests() == 0  # the refused approval lapsed it
    assert kinds().count(EventKind.REQUEST_LAPSED) == 1
    assert "lapsed" in sent()[-1].subject


def test_the_sweep_lapses_each_due_request_once(staging, member, outsider):
    due = [ask(staging, member), ask(staging, outsider)]
    AccessRequest.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lapse_due_requests() == 2
    assert lapse_due_requests() == 0
    assert kinds().count(EventKind.REQUEST_LAPSED) == 2
    assert {Grant.objects.get(pk=item.grant_id).status for item in due} == {"lapsed"}


def test_withdrawing_ends_the_request_and_its_grant(staging, member, owner):
    access_request = ask(staging, member)
    with pytest.raises(RequestRefused):
        withdraw_request(access_request, actor=owner)
    withdraw_request(access_request, actor=member)
    assert Grant.objects.get(pk=access_request.grant_id).status == "denied"
    assert kinds()[-1] == EventKind.REQUEST_WITHDRAWN


def test_breaking_glass_supersedes_a_pending_request(staging, member):
    pending = ask(staging, member)
    staging.break_glass_users.add(member)
    grant = break_glass(staging, actor=member, reason="outage")
    assert grant.status == "active" and grant.pk != pending.grant_id
    pending.refresh_from_db()
    assert pending.status == "withdrawn"
    assert kinds()[-2:] == [EventKind.REQUEST_WITHDRAWN, EventKind.GRANT_ACTIVATED]


def test_membership_of_the_auto_approve_group_approves_at_once(staging, owner, member):
    oncall = Group.objects.create(name="On call", slug="oncall")
    oncall.members.add(member)
    staging.auto_approve_group = oncall
    staging.save()
    access_request = ask(staging, member)
    assert access_request.status == "approved"
    assert access_request.auto_rule == "mark is a member of On call (oncall)"
    event = AuditEvent.objects.get(kind=EventKind.REQUEST_AUTO_APPROVED)
    assert event.data["rule"] == access_request.auto_rule and event.actor_type == "system"
    assert decide(member, staging).allowed
    assert any("Approved at once" in m.body for m in sent() if m.to == [owner.email])


def test_nested_access_to_the_auto_approve_group_counts_too(staging, member):
    oncall = Group.objects.create(name="On call", slug="oncall")
    rota = Group.objects.create(name="Rota", slug="rota")
    rota.contains.add(oncall)
    rota.members.add(member)
    staging.auto_approve_group = oncall
    staging.save()
    assert "through nesting" in ask(staging, member).auto_rule


def test_an_extension_moves_the_end_without_a_gap(staging, owner, member):
    first = ask(staging, member, minutes=60)
    approve_request(first, actor=owner)
    grant = Grant.objects.get(pk=first.grant_id)
    end = grant.expires_at
    with pytest.raises(InvalidInput, match="time left"):  # less than the hour left
        request_extension(grant, actor=member, minutes=30, reason="not done yet")
    extension = request_extension(grant, actor=member, minutes=120, reason="not done yet")
    assert extension.expires_at <= end  # lapses with the grant at the latest
    with pytest.raises(GrantError, match="already pending"):
        request_extension(grant, actor=member, minutes=120, reason="again")
    approved_at = timezone.now()
    approve_request(extension, actor=owner)
    grant.refresh_from_db()
    # Two hours from the approval: no gap, and not two hours added to the hour left.
    assert approved_at + timedelta(minutes=120) <= grant.expires_at
    assert grant.expires_at <= timezone.now() + timedelta(minutes=120)
    assert Grant.objects.filter(user=member).count() == 1
    assert kinds().count(EventKind.REQUEST_APPROVED) == 2
    assert kinds().count(EventKind.GRANT_EXTENDED) == 1


def test_an_extension_of_an_ended_grant_lapses_instead(staging, owner, member):
    first = ask(staging, member)
    approve_request(first, actor=owner)
    grant = Grant.objects.get(pk=first.grant_id)
    extension = request_extension(grant, actor=member, minutes=240, reason="more")
    revoke_grant(grant, actor=owner)
    with pytest.raises(GrantError, match="lapsed"):
        approve_request(extension, actor=owner)
    extension.refresh_from_db()
    assert extension.status == "lapsed"


def test_only_the_holder_asks_for_more_time(staging, owner, member, outsider):
    first = ask(staging, member)
    approve_request(first, actor=owner)
    with pytest.raises(RequestRefused):
        request_extension(first.grant, actor=outsider, minutes=30,
                                          reason="x")


def test_request_settings_changes_are_audited_with_what_changed(staging, owner):
    rows = staging.history.count()
    changed = set_request_settings(
        staging, {"requestable": True, "approvals_needed": 1, "request_max_minutes": 60},
        actor=owner)
    assert changed == ["request_max_minutes"]
    event = AuditEvent.objects.get(kind=EventKind.REQUEST_SETTINGS_CHANGED)
    assert event.data == {"changed": {"request_max_minutes": {"from": 480, "to": 60}}}
    assert staging.history.count() == rows + 1
    assert set_request_settings(staging, {"requestable": True},
                                                actor=owner) == []


def test_the_reminder_offers_a_one_click_extension_where_the_group_takes_requests(
        staging, owner, member):
    approve_request(ask(staging, member, minutes=60), actor=owner)
    assert send_expiry_reminders() == 1
    reminder = next(m for m in sent() if m.to == [member.email] and "ends" in m.body)
    assert "Ask the owners in one click:" in reminder.body
    grant = Grant.objects.get(user=member)
    assert f"/access/#extend-{grant.pk}" in reminder.body

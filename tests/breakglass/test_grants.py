"""Break glass, extension, exact expiry, revocation and revoke-all, walked through the
services as every door (page, admin, API, worker) uses them."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import relay_if_due, send_due_deliveries
from audit.services import verify_trail
from breakglass import tasks
from breakglass.access import access_by_group, decide, has_access
from breakglass.models import Grant, Group
from breakglass.services.break_glass import break_glass
from breakglass.services.errors import (
    BreakGlassRefused,
    GrantError,
    InvalidInput,
    TransitionRefused,
)
from breakglass.services.grants import (
    expire_due_grants,
    expire_grant,
    revoke_all,
    revoke_grant,
    send_expiry_reminders,
)
from tests.breakglass.helpers import nest_under, open_incident

pytestmark = pytest.mark.django_db


def events(kind) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=kind).order_by("sequence"))


def test_break_glass_gives_12_hours_and_alerts_owners_and_reviewers(database, member, owner,
                                                                      reviewer):
    reviewer.mobile = "+15555550111"
    reviewer.save()
    open_incident("INC-7", "sev1")
    grant = break_glass(database, actor=member, reason="DB is down", incident="INC-7")
    assert grant.status == Grant.Status.ACTIVE
    assert grant.expires_at - grant.activated_at == timedelta(hours=12)
    assert has_access(member, database)
    event = events(EventKind.GRANT_ACTIVATED)[0]
    assert (event.actor_label, event.reason, event.data["incident"]) == (
        member.username, "DB is down", "INC-7")
    # The activation wrote one fan-out row; the relay expands it into the alerts.
    assert Delivery.objects.filter(event=event).values_list("channel", flat=True).get() == (
        "fanout")
    send_due_deliveries()
    recipients = set(Delivery.objects.filter(event=event).exclude(channel="fanout")
                     .values_list("channel", "recipient"))
    assert recipients == {("email", owner.email), ("email", reviewer.email),
                          ("sms", "+15555550111")}
    body = Delivery.objects.get(event=event, recipient=owner.email).body
    for fact in (member.username, "Production DB", "DB is down", "INC-7", "SEV1", "UTC"):
        assert fact in body
    assert Schedule.objects.get(name=f"expire-grant-{grant.pk}").next_run == grant.expires_at


def test_the_group_duration_applies(database, member):
    database.break_glass_minutes = 30
    database.save()
    grant = break_glass(database, actor=member, reason="quick fix")
    assert grant.expires_at - grant.activated_at == timedelta(minutes=30)


def test_breaking_glass_again_extends_the_same_grant(database, member):
    first = break_glass(database, actor=member, reason="first")
    Grant.objects.filter(pk=first.pk).update(expires_at=first.expires_at - timedelta(hours=6))
    second = break_glass(database, actor=member, reason="still needed")
    assert second.pk == first.pk
    assert Grant.objects.count() == 1
    assert second.expires_at > first.expires_at - timedelta(hours=6)
    assert len(events(EventKind.GRANT_EXTENDED)) == 1


def test_only_break_glass_users_may_and_a_refusal_is_audited(database, outsider):
    with pytest.raises(BreakGlassRefused):
        break_glass(database, actor=outsider, reason="let me in")
    assert not Grant.objects.exists()
    refused = events(EventKind.GRANT_REFUSED)
    assert len(refused) == 1 and refused[0].outcome == "denied"


@pytest.mark.parametrize("reason", ["", "   ", "x" * 2001])
def test_a_reason_is_required_and_bounded(database, member, reason):
    with pytest.raises(InvalidInput) as error:
        break_glass(database, actor=member, reason=reason)
    assert error.value.field == "reason"
    assert not Grant.objects.exists() and not AuditEvent.objects.exists()


def test_expiry_is_exact_without_a_worker(database, member):
    grant = break_glass(database, actor=member, reason="r")
    assert decide(member, database, at=grant.expires_at - timedelta(milliseconds=1)).allowed
    assert not decide(member, database, at=grant.expires_at).allowed
    assert not decide(member, database, at=grant.expires_at + timedelta(milliseconds=1)).allowed
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE  # no worker ran, yet access is already gone


def test_expiry_runs_once_however_many_times_it_is_asked(database, member):
    grant = break_glass(database, actor=member, reason="r")
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expire_due_grants() == 1
    assert expire_due_grants() == 0
    assert tasks.expire_grant(grant.pk) is False  # the job at the instant, after the sweep
    with pytest.raises(TransitionRefused):
        expire_grant(grant.pk)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.EXPIRED
    assert grant.ended_at == grant.expires_at
    assert len(events(EventKind.GRANT_EXPIRED)) == 1
    assert not Schedule.objects.filter(name=f"expire-grant-{grant.pk}").exists()


def test_an_extended_grant_is_not_expired_by_its_old_job(database, member):
    grant = break_glass(database, actor=member, reason="r")
    assert expire_grant(grant.pk) is False
    assert Grant.objects.get(pk=grant.pk).status == Grant.Status.ACTIVE


def test_breaking_glass_after_an_unswept_expiry_opens_a_new_grant(database, member):
    old = break_glass(database, actor=member, reason="r")
    Grant.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    new = break_glass(database, actor=member, reason="again")
    assert new.pk != old.pk
    assert Grant.objects.get(pk=old.pk).status == Grant.Status.EXPIRED
    assert len(events(EventKind.GRANT_ACTIVATED)) == 2


def test_end_access_now_takes_effect_on_the_next_check(database, member):
    grant = break_glass(database, actor=member, reason="r")
    revoke_grant(grant, actor=member, reason="done")
    assert not has_access(member, database)
    grant.refresh_from_db()
    assert (grant.status, grant.ended_by, grant.end_reason) == ("revoked", member, "done")
    with pytest.raises(GrantError):
        revoke_grant(grant, actor=member)
    assert len(events(EventKind.GRANT_REVOKED)) == 1


def test_revoke_all_ends_every_active_grant_of_a_group_in_one_step(database, member, owner,
                                                                  admin_user):
    database.break_glass_users.add(owner)
    break_glass(database, actor=member, reason="a")
    break_glass(database, actor=owner, reason="b")
    other = Group.objects.create(name="Other", slug="other")
    other.break_glass_users.add(member)
    kept = break_glass(other, actor=member, reason="c")
    assert revoke_all(database, actor=admin_user, reason="compromise") == 2
    assert not has_access(member, database) and not has_access(owner, database)
    assert Grant.objects.get(pk=kept.pk).status == Grant.Status.ACTIVE
    assert events(EventKind.GRANTS_REVOKED_ALL)[0].data["grants"] == 2
    assert revoke_all(None, actor=admin_user, reason="everything") == 1
    assert verify_trail().intact


def test_nesting_gives_access_to_contained_groups_transitively(database, member, outsider):
    middle = Group.objects.create(name="Middle", slug="middle")
    top = Group.objects.create(name="Top", slug="top")
    top.contains.add(middle)
    middle.contains.add(database)
    top.members.add(outsider)
    decision = decide(outsider, database)
    assert (decision.allowed, decision.via) == (True, "nested")
    assert decide(outsider, top).via == "member"
    assert not decide(member, top).allowed
    assert set(access_by_group(outsider)) == {top.pk, middle.pk, database.pk}


def test_a_cycle_does_not_hang_the_decision(database, outsider):
    other = Group.objects.create(name="Other", slug="other")
    other.contains.add(database)
    database.contains.add(other)  # only the admin form refuses cycles; the query survives
    assert not decide(outsider, database).allowed
    other.members.add(outsider)
    assert decide(outsider, database).via == "nested"


def test_the_decision_costs_one_query_at_any_depth(database, outsider, django_assert_num_queries):
    nest_under(database, 6).members.add(outsider)
    with django_assert_num_queries(1):
        assert decide(outsider, database).allowed


def test_the_holder_is_reminded_once_an_hour_before_the_end(database, member):
    grant = break_glass(database, actor=member, reason="r")
    assert send_expiry_reminders() == 0
    Grant.objects.filter(pk=grant.pk).update(
        expires_at=grant.activated_at + timedelta(minutes=59))
    assert send_expiry_reminders() == 1
    assert send_expiry_reminders() == 0
    reminder = events(EventKind.GRANT_EXPIRY_REMINDER)[0]
    assert reminder.deliveries.filter(recipient=member.email).exists()


def test_inactive_users_never_have_access(database, member):
    break_glass(database, actor=member, reason="r")
    member.is_active = False
    member.save()
    assert not has_access(member, database)


def test_the_workers_tick_expands_and_sends_the_alerts(
    database, member, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as after_commit:
        break_glass(database, actor=member, reason="outage")
    # The activation wrote one fan-out row and asked nothing of the broker.
    assert (after_commit, mail.outbox) == ([], [])
    assert relay_if_due()  # tasks run at once in tests
    assert any("broke glass on Production DB" in m.subject for m in mail.outbox)
    assert not relay_if_due()

"""The minute sweep in batches (issue 19): a batch of expiries writes exactly what as many
single expiries write, grants ended meanwhile are left alone, a batch costs the same few
statements whatever its size, and (PostgreSQL, real threads) sweeps running at once expire
each grant exactly once without waiting on a grant someone else holds."""

import re
import threading
import time
from datetime import timedelta
from itertools import groupby

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from audit.services import verify_trail
from breakglass.access import decide
from breakglass.models import Connector, Grant
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import (
    end_grant_now,
    expire_due_grants,
    expire_grant,
    expire_grants,
    revoke_grant,
)
from tests.audit.test_concurrency import run_in_threads
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SEALED = ["sequence", "kind", "outcome", "actor_type", "actor_id", "actor_label", "target_type",
          "target_id", "target_label", "reason", "data", "ip", "user_agent", "request_id"]


@pytest.fixture
def dba_role(database) -> AuthGroup:
    """A connector on prod-db: a grant makes its holder a member of the `dba` auth group."""
    role = AuthGroup.objects.create(name="dba")
    Connector.objects.create(name="deployers", group=database, kind=Connector.Kind.DJANGO_GROUP,
                             django_group=role)
    return role


def holders(database, count: int) -> list:
    users = [make_user(f"holder{n}") for n in range(count)]
    database.break_glass_users.add(*users)
    return users


def broken_glass(database, users, *, due_in=timedelta(seconds=-1)) -> list[Grant]:
    """Each user breaks glass on `database` (the alerts and connector memberships that sets
    off delivered); then time passes until the grants are due (`due_in` from now, one
    microsecond apart in the order the users came)."""
    grants = [break_glass(database, actor=user, reason="replica lag") for user in users]
    relay()
    start = timezone.now() + due_in
    for index, grant in enumerate(grants):
        Grant.objects.filter(pk=grant.pk).update(expires_at=start + timedelta(microseconds=index))
    return list(Grant.objects.filter(pk__in=[grant.pk for grant in grants]).order_by("pk"))


def relay() -> None:
    while send_due_deliveries():
        pass


def outcome(expire, dba_role) -> dict:
    """Run `expire`, let the relay expand and deliver what it queued, and describe everything
    that was written; then undo it all, so that the next path starts from the same state."""
    mail.outbox.clear()
    with transaction.atomic():
        expire()
        queued = sorted(Delivery.objects.filter(event__kind=EventKind.GRANT_EXPIRED)
                        .values_list("event__target_id", "channel", "recipient", "body"))
        relay()
        # Links name an event by its id, which PostgreSQL does not give back on rollback: by
        # its sequence number instead, the same on both paths.
        links = {f"/auditevent/{pk}/": f"/auditevent/#{sequence}/"
                 for pk, sequence in AuditEvent.objects.values_list("pk", "sequence")}
        linked = re.compile(r"/auditevent/\d+/")

        def unlinked(text: str) -> str:
            return linked.sub(lambda match: links[match.group(0)], text)

        described = {
            "grants": list(Grant.objects.order_by("pk").values_list(
                "pk", "status", "ended_at", "ended_by", "end_reason")),
            "expiry jobs": sorted(Schedule.objects.filter(name__startswith="expire-grant-")
                                  .values_list("name", flat=True)),
            "events": list(AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED)
                           .order_by("sequence").values(*SEALED)),
            "queued": queued,
            "deliveries": sorted(
                (target, channel, recipient, subject, unlinked(body), status)
                for target, channel, recipient, subject, body, status in Delivery.objects.filter(
                    event__kind=EventKind.GRANT_EXPIRED).values_list(
                    "event__target_id", "channel", "recipient", "subject", "body", "status")),
            "mail": sorted((tuple(message.to), message.subject, unlinked(message.body))
                           for message in mail.outbox),
            "dba": sorted(dba_role.user_set.values_list("username", flat=True)),
            "chain": verify_trail().problem or "intact",
        }
        transaction.set_rollback(True)
    return described


def test_a_batch_sweep_writes_exactly_what_single_expiries_write(database, dba_role, reviewer):
    grants = broken_glass(database, holders(database, 7))
    assert sorted(dba_role.user_set.values_list("username", flat=True)) == [
        f"holder{n}" for n in range(7)]

    one_by_one = outcome(lambda: [expire_grant(grant.pk) for grant in grants], dba_role)
    in_batches = outcome(lambda: expire_due_grants(batch_size=3), dba_role)

    assert in_batches == one_by_one
    assert {row[1] for row in in_batches["grants"]} == {"expired"}
    assert len(in_batches["events"]) == 7 and in_batches["expiry jobs"] == []
    assert [row[1] for row in in_batches["queued"]] == ["fanout"] * 7
    assert {row[1] for row in in_batches["deliveries"]} == {"fanout", "email", "connector"}
    assert in_batches["dba"] == [] and in_batches["chain"] == "intact"
    assert len(in_batches["mail"]) == 7


def test_the_sweep_takes_the_oldest_instant_first_one_transaction_a_batch(database, dba_role):
    grants = broken_glass(database, holders(database, 5))
    for grant, seconds_ago in zip(grants, [1, 5, 3, 4, 2], strict=True):
        Grant.objects.filter(pk=grant.pk).update(
            expires_at=timezone.now() - timedelta(seconds=seconds_ago))
    assert expire_due_grants(batch_size=2) == 5
    expired = AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED).order_by("sequence")
    # Each batch's events are recorded at its one instant: 2 + 2 + 1.
    assert [len(list(batch)) for _, batch in groupby(expired, lambda e: e.recorded_at)] == [
        2, 2, 1]
    by_instant = sorted(grants, key=lambda grant: Grant.objects.get(pk=grant.pk).expires_at)
    assert [event.target_id for event in expired] == [str(grant.pk) for grant in by_instant]
    assert expire_due_grants(batch_size=2) == 0


def test_a_batch_costs_the_same_statements_whatever_its_size(database, dba_role):
    grants = broken_glass(database, holders(database, 10))
    now = timezone.now()
    with CaptureQueriesContext(connection) as small:
        assert len(expire_grants([grants[0].pk, grants[1].pk], at=now)) == 2
    with CaptureQueriesContext(connection) as large:
        assert len(expire_grants([grant.pk for grant in grants[2:]], at=now)) == 8
    assert len(large) == len(small)


def test_a_grant_revoked_after_the_sweep_chose_it_is_not_ended_again(database, member, owner):
    grants = broken_glass(database, holders(database, 3))
    chosen = [grant.pk for grant in grants]  # due, as the sweep saw them
    # Revoked meanwhile (a moment earlier it was still running: the time travel puts it back).
    Grant.objects.filter(pk=grants[1].pk).update(expires_at=timezone.now() + timedelta(hours=1))
    revoke_grant(Grant.objects.get(pk=grants[1].pk), actor=owner, reason="not needed any more")
    Grant.objects.filter(pk=grants[1].pk).update(expires_at=grants[1].expires_at)
    expired = expire_grants(chosen, at=timezone.now())
    assert [grant.pk for grant in expired] == [grants[0].pk, grants[2].pk]
    revoked = Grant.objects.get(pk=grants[1].pk)
    assert revoked.status == "revoked" and revoked.ended_by == owner
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED,
                                     target_id=str(grants[1].pk)).count() == 0
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED).count() == 1


def test_a_grant_ended_by_a_cause_after_the_sweep_chose_it_is_expired_once(database,
                                                                           reviewer):
    grants = broken_glass(database, holders(database, 3))
    end_grant_now(Grant.objects.get(pk=grants[0].pk), actor=reviewer, reason="incident over",
                  cause={"incident": "INC-1"}, tell=False)
    assert len(expire_grants([grant.pk for grant in grants], at=timezone.now())) == 2
    for grant in grants:
        assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED,
                                         target_id=str(grant.pk)).count() == 1
    assert verify_trail().intact


def test_a_grant_not_yet_due_is_left_to_its_instant(database):
    grant, = broken_glass(database, holders(database, 1), due_in=timedelta(minutes=5))
    assert expire_grants([grant.pk], at=timezone.now()) == []
    assert expire_due_grants() == 0
    assert Grant.objects.get(pk=grant.pk).status == "active"
    assert decide(grant.user, database).allowed


# --- PostgreSQL, real threads ----------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_expire_each_grant_exactly_once(database):
    grants = broken_glass(database, holders(database, 120))
    counts: list[int] = []
    assert run_in_threads(2, lambda index: counts.append(expire_due_grants(batch_size=7))) == []
    assert sum(counts) == 120
    expired = AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED)
    assert sorted(expired.values_list("target_id", flat=True)) == sorted(
        str(grant.pk) for grant in grants)
    assert Delivery.objects.filter(channel="fanout", event__in=expired).count() == 120
    assert set(Grant.objects.values_list("status", flat=True)) == {"expired"}
    report = verify_trail()
    assert report.intact, report.problem


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_sweep_passes_by_a_grant_being_revoked_and_never_ends_it_twice(database, owner):
    grants = broken_glass(database, holders(database, 6), due_in=timedelta(seconds=-1))
    held = grants[2]
    Grant.objects.filter(pk=held.pk).update(expires_at=timezone.now() + timedelta(seconds=1))
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def revoke_slowly() -> None:
        # A revocation that has locked the grant and read the clock, still running, not
        # yet at its audit event (which would hold the chain's lock, and every writer with it).
        try:
            with transaction.atomic():
                grant = Grant.objects.select_for_update().get(pk=held.pk)
                decided_at = timezone.now()
                locked.set()
                release.wait(timeout=30)
                revoke_grant(grant, actor=owner, reason="done", at=decided_at)
        except BaseException as exc:  # asserted below
            errors.append(exc)
        finally:
            connection.close()

    revoker = threading.Thread(target=revoke_slowly)
    revoker.start()
    assert locked.wait(timeout=30)
    time.sleep(1.2)  # the held grant is now past its instant, and still active to others
    assert expire_due_grants(batch_size=2) == 5
    assert revoker.is_alive()  # still holding its grant: the sweep did not wait for it
    release.set()
    revoker.join(timeout=60)
    assert errors == []
    assert expire_due_grants(batch_size=2) == 0
    assert Grant.objects.get(pk=held.pk).status == "revoked"
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED).count() == 5
    assert not AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED,
                                         target_id=str(held.pk)).exists()
    assert verify_trail().intact

"""record_many(): the events record() would append one call at a time, in one go, under the
same chain rules (issue 19: the expiry sweep's batches)."""

import threading

import pytest
from django.db import connection, transaction

from audit.catalogue import EventKind
from audit.models import AuditEvent, ChainHead
from audit.services import AuditWriteError, record, record_many, verify_trail
from tests.audit.test_concurrency import run_in_threads

pytestmark = pytest.mark.django_db

STORED = ["sequence", "kind", "outcome", "actor_type", "actor_id", "actor_label", "target_type",
          "target_id", "target_label", "reason", "data", "ip", "user_agent", "request_id"]


def written(append) -> tuple[list, list, str]:
    """What `append` writes (rows as stored, and the verdict on the chain), then undone."""
    with transaction.atomic():
        events = append()
        rows = list(AuditEvent.objects.order_by("sequence").values(*STORED))
        by_id = [AuditEvent.objects.get(pk=event.pk).sequence for event in events]
        verdict = verify_trail().problem or "intact"
        transaction.set_rollback(True)
    return rows, by_id, verdict


def test_record_many_writes_what_record_writes_one_call_at_a_time(owner, member):
    entries = [(member, {"n": 1, "text": "two\nlines, a NUL \x00, a backslash \\0 and \u202e"}),
               (owner, {"nested": {"list": [1, "b", None, True]}}),
               (member, {})]
    one_by_one = written(lambda: [
        record(EventKind.GRANT_EXPIRED, actor=owner, target=target, reason="ended", data=data)
        for target, data in entries])
    at_once = written(lambda: record_many(EventKind.GRANT_EXPIRED, entries, actor=owner,
                                          reason="ended"))
    assert at_once == one_by_one
    rows, by_id, verdict = at_once
    assert [row["sequence"] for row in rows] == by_id == [1, 2, 3]  # saved, with their ids
    assert rows[0]["data"]["text"].endswith("\x00, a backslash \\0 and \u202e")
    assert verdict == "intact"


def test_record_many_continues_the_chain_record_left(member):
    with transaction.atomic():
        record(EventKind.SIGN_IN, actor=member)
        events = record_many(EventKind.GRANT_EXPIRED, [(member, {"n": n}) for n in range(4)],
                             actor=None)
        record(EventKind.SIGN_OUT, actor=member)
    assert [event.sequence for event in events] == [2, 3, 4, 5]
    head = ChainHead.objects.get()
    assert head.sequence == 6
    report = verify_trail()
    assert report.intact and report.count == 6, report.problem


def test_nothing_to_record_writes_nothing(member):
    assert record_many(EventKind.GRANT_EXPIRED, [], actor=None) == []
    assert ChainHead.objects.get().sequence == 0
    with pytest.raises(ValueError, match="unknown audit event kind"):
        record_many("grant.vanished", [(member, {})], actor=None)
    assert not AuditEvent.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_record_and_record_many_at_once_keep_the_chain_gapless(member):
    def append(index: int) -> None:
        for n in range(5):
            with transaction.atomic():
                if index % 2:
                    record(EventKind.SIGN_IN, actor=member, data={"thread": index, "n": n})
                else:
                    record_many(EventKind.GRANT_EXPIRED,
                                [(member, {"thread": index, "n": n, "k": k}) for k in range(7)],
                                actor=None)

    assert run_in_threads(10, append) == []
    sequences = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, 5 * 5 + 5 * 5 * 7 + 1))
    report = verify_trail()
    assert report.intact, report.problem


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_batch_that_cannot_take_the_chain_fails_closed(member):
    holding, release = threading.Event(), threading.Event()

    def hold_the_chain() -> None:
        try:
            with transaction.atomic():
                record(EventKind.SIGN_IN, actor=member)
                holding.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_chain)
    holder.start()
    try:
        assert holding.wait(timeout=30)
        with pytest.raises(AuditWriteError), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
            record_many(EventKind.GRANT_EXPIRED, [(member, {"n": 1})], actor=None)
    finally:
        release.set()
        holder.join(timeout=60)
    assert list(AuditEvent.objects.values_list("kind", flat=True)) == [EventKind.SIGN_IN]
    assert verify_trail().intact

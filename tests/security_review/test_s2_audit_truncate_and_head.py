"""Append-only beyond UPDATE and DELETE (QUALITY Q25): on PostgreSQL, TRUNCATE of the audit
trail is refused; on both databases the chain head only moves forward, one event at a time,
in step with the event that it names. PostgreSQL is the one that matters (record() moves the
head there in the same statement as the insert); SQLite runs the same checks."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit.catalogue import EventKind
from audit.models import AuditEvent, ChainHead
from audit.services import record, verify_trail

pytestmark = pytest.mark.django_db


def run(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def refused(sql: str, params=()) -> str:
    """Run `sql` in a savepoint and return the database's refusal."""
    with pytest.raises(DatabaseError) as refusal, transaction.atomic():
        run(sql, params)
    return str(refusal.value)


@pytest.fixture
def trail(member) -> list[AuditEvent]:
    for number in range(5):
        with transaction.atomic():
            record(EventKind.SIGN_IN, actor=member, data={"n": number})
    return list(AuditEvent.objects.order_by("sequence"))


def state() -> tuple:
    head = ChainHead.objects.get(pk=1)
    return AuditEvent.objects.count(), head.sequence, head.mac


@pytest.mark.postgres
@pytest.mark.parametrize("statement", [
    "TRUNCATE audit_auditevent CASCADE",
    "TRUNCATE audit_chainhead",
    "TRUNCATE audit_auditevent, audit_chainhead CASCADE",
])
def test_truncating_the_trail_or_its_head_is_refused(trail, statement):
    before = state()
    assert "append-only" in refused(statement)
    assert state() == before
    assert verify_trail().intact


def test_the_chain_head_cannot_be_deleted(trail):
    before = state()
    assert "chain head" in refused("DELETE FROM audit_chainhead")
    assert state() == before


def test_the_chain_head_cannot_be_rewound_to_hide_a_deleted_tail(trail):
    before = state()
    fourth = trail[3]
    assert "chain head" in refused(
        "UPDATE audit_chainhead SET sequence = %s, mac = %s WHERE id = 1",
        [fourth.sequence, fourth.mac])
    assert state() == before


@pytest.mark.parametrize("change", [
    ("sequence + 1", "'" + "f" * 64 + "'"),  # forward, but no event carries that MAC
    ("sequence + 2", "mac"),                 # skips a number
    ("sequence", "'" + "0" * 64 + "'"),      # same place, another MAC
])
def test_the_chain_head_moves_only_in_step_with_an_appended_event(trail, change):
    sequence, mac = change
    before = state()
    assert "chain head" in refused(
        f"UPDATE audit_chainhead SET sequence = {sequence}, mac = {mac} WHERE id = 1")  # noqa: S608
    assert state() == before


def test_a_second_head_row_cannot_be_planted(trail):
    assert "chain head" in refused(
        "INSERT INTO audit_chainhead (id, sequence, mac) VALUES (2, %s, %s)",
        [trail[-1].sequence, trail[-1].mac])
    assert ChainHead.objects.count() == 1


def test_events_appended_one_by_one_or_several_per_transaction_still_move_the_head(member):
    with transaction.atomic():
        for number in range(3):
            record(EventKind.SIGN_IN, actor=member, data={"n": number})
    record(EventKind.SIGN_OUT, actor=member)
    report = verify_trail()
    assert report.intact, report.problem
    assert state()[:2] == (4, 4)

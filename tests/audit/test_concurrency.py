"""PostgreSQL with real threads: concurrent writers keep the chain gapless and intact, and
concurrent relays send each alert once."""

import threading

import pytest
from django.core import mail
from django.db import connection, transaction

from audit.alerts import alert
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from audit.services import record, verify_trail

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 50
EVENTS = 1_000


def run_in_threads(count: int, work) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors


def test_50_threads_appending_1000_events_keep_the_chain_gapless_and_intact(member):
    def append(index: int) -> None:
        for n in range(EVENTS // THREADS):
            with transaction.atomic():
                record(EventKind.SIGN_IN, actor=member, data={"thread": index, "n": n})

    assert run_in_threads(THREADS, append) == []
    sequences = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, EVENTS + 1))
    report = verify_trail()
    assert report.intact, report.problem
    assert report.count == EVENTS


def test_concurrent_relays_send_each_alert_exactly_once(member, reviewer):
    for _ in range(40):
        with transaction.atomic():
            alert(record(EventKind.LOCKOUT, actor=None), users=[reviewer], channels=["email"])
    assert Delivery.objects.count() == 40

    assert run_in_threads(8, lambda index: send_due_deliveries()) == []

    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 40
    keys = [m.extra_headers["X-Breakglass-Delivery"] for m in mail.outbox]
    assert len(keys) == 40 and len(set(keys)) == 40


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (None, None),
        ("UPDATE audit_auditevent SET reason = 'x' WHERE sequence = 10", "event 10 was edited"),
        ("DELETE FROM audit_auditevent WHERE sequence = 11", "event 11 is missing"),
        ("DELETE FROM audit_auditevent WHERE sequence = 10", "event 10 is missing"),
        ("DELETE FROM audit_auditevent WHERE sequence = 30", "the chain head is at event 30"),
    ],
)
def test_verification_in_several_processes_reaches_the_same_verdict(member, tamper, problem):
    from tests.audit.helpers import raw, triggers_lifted

    for _ in range(30):
        record(EventKind.SIGN_IN, actor=member)
    if tamper:
        with triggers_lifted():
            raw(tamper)
    serial, parallel = verify_trail(workers=1), verify_trail(workers=3)
    assert (parallel.intact, parallel.problem) == (serial.intact, serial.problem)
    if problem is None:
        assert parallel.intact and parallel.count == 30
    else:
        assert problem in parallel.problem

"""Audit chain benchmarks (issue: audit trail). Prints ratios measured in the same run:

1. Appending events with record() (lock the head, seal, insert, move the head), one
   transaction each, against inserting the same rows without the chain. Target >= 0.5.
2. verify_audit's check over 100,000 events against computing the same HMACs over the same
   bytes in a tight loop. Target >= 0.3.

    .venv/bin/python bench/audit_chain.py            # SQLite
    DATABASE_URL=postgres://... .venv/bin/python bench/audit_chain.py
"""

import hmac
import sys
import time

from _setup import rate, throwaway_database, timer

APPEND_EVENTS = 2_000
VERIFY_EVENTS = 100_000


def bench_append(result: dict) -> None:
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import User
    from audit.catalogue import EventKind
    from audit.models import AuditEvent
    from audit.services import record

    user = User.objects.create_user("bench")
    fields = dict(kind=EventKind.SIGN_IN, actor_type="user", actor_id=str(user.pk),
                  actor_label=user.username, target_type="accounts.user",
                  target_id=str(user.pk), target_label=user.username,
                  reason="benchmark reason text", data={"n": 1}, ip="192.0.2.1",
                  user_agent="bench/1.0", request_id="0" * 32)
    # Alternating rounds, so drift in the machine's speed falls on both sides alike.
    result["plain"] = result["chained"] = 0.0
    rounds = 10
    for round_ in range(rounds):
        start = time.perf_counter()
        for n in range(APPEND_EVENTS // rounds):
            with transaction.atomic():
                AuditEvent(sequence=10_000_000 + round_ * APPEND_EVENTS + n,
                           recorded_at=timezone.now(), mac="0" * 64, **fields
                           ).save(force_insert=True)
        middle = time.perf_counter()
        for _ in range(APPEND_EVENTS // rounds):
            with transaction.atomic():
                record(EventKind.SIGN_IN, actor=user, target=user,
                       reason="benchmark reason text", data={"n": 1})
        result["plain"] += middle - start
        result["chained"] += time.perf_counter() - middle


def build_chain(count: int) -> list[bytes]:
    """Write a sealed chain of `count` events quickly (bulk insert, outside record()), and
    return the exact bytes each MAC covers, for the baseline."""
    from datetime import timedelta

    from django.utils import timezone

    from audit import chain
    from audit.models import AuditEvent, ChainHead
    from audit.services import audit_key, sealed_values

    key, previous, start = audit_key(), chain.GENESIS_MAC, timezone.now()
    events, covered = [], []
    for n in range(1, count + 1):
        event = AuditEvent(
            sequence=n, recorded_at=start + timedelta(microseconds=n), kind="auth.sign_in",
            outcome="success", actor_type="user", actor_id="1", actor_label="alice",
            target_type="accounts.user", target_id="1", target_label="alice",
            reason="rotating the database credentials after SEV1-1234", data={"n": n},
            ip="192.0.2.1", user_agent="Mozilla/5.0 (X11; Linux x86_64)", request_id="f" * 32,
        )
        values = sealed_values(event)
        covered.append(previous.encode() + chain.canonical(values))
        event.mac = previous = chain.seal(key, previous, values)
        events.append(event)
    AuditEvent.objects.bulk_create(events, batch_size=5000)
    ChainHead.objects.filter(pk=1).update(sequence=count, mac=previous)
    return covered


def bench_verify(result: dict) -> None:
    from audit.models import AuditEvent
    from audit.services import audit_key, verify_trail

    covered = []

    def rebuild() -> None:
        AuditEvent.objects.all().delete()
        covered.extend(build_chain(VERIFY_EVENTS))

    # The bulk-written chain moves the head in one jump, which the triggers refuse.
    with_triggers_lifted(rebuild)
    key = audit_key()
    with timer(result, "hmac_loop"):
        for body in covered:
            hmac.digest(key, body, "sha256").hex()
    with timer(result, "verify_one_process"):
        report = verify_trail(workers=1)
    assert report.intact and report.count == VERIFY_EVENTS, report.problem
    with timer(result, "verify"):
        report = verify_trail()
    assert report.intact and report.count == VERIFY_EVENTS, report.problem


def with_triggers_lifted(action) -> None:
    from django.db import connection

    from audit import triggers

    triggers.remove(connection)
    try:
        action()
    finally:
        triggers.install(connection)


def main() -> int:
    result: dict = {}
    with throwaway_database() as vendor:
        bench_append(result)
        bench_verify(result)
    append_ratio = result["plain"] / result["chained"]
    verify_ratio = result["hmac_loop"] / result["verify"]
    print(f"database: {vendor}")
    print(f"append: plain insert {rate(APPEND_EVENTS, result['plain'])}, "
          f"record() {rate(APPEND_EVENTS, result['chained'])} "
          f"-> ratio {append_ratio:.2f} (target >= 0.5)")
    print(f"verify: HMAC loop {rate(VERIFY_EVENTS, result['hmac_loop'])}, "
          f"verify_audit {rate(VERIFY_EVENTS, result['verify'])} "
          f"-> ratio {verify_ratio:.2f} (target >= 0.3); in one process "
          f"{rate(VERIFY_EVENTS, result['verify_one_process'])} -> "
          f"{result['hmac_loop'] / result['verify_one_process']:.2f}")
    return 0 if append_ratio >= 0.5 and verify_ratio >= 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The one writer of audit events, and the trail's other state changes (heartbeats,
checkpoints)."""

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.client_ip import client_ip
from audit import chain
from audit.catalogue import ActorType, EventKind, Outcome
from audit.checkpoints import send_to_syslog, store_checkpoint
from audit.db import fast_insert, insert_rows, prepared_cursor, row_values
from audit.models import AuditEvent, ChainHead, Checkpoint, Heartbeat, unescape_nul, walk_strings

SCHEDULER_HEARTBEAT = "scheduler"
CHECKPOINT_HEARTBEAT = "checkpoint"


class AuditWriteError(Exception):
    """The audit event could not be written, so the change it describes must not happen."""


@dataclass(frozen=True)
class Anonymous:
    """An actor who has not proved who they are, such as a failed sign-in, by the name given."""

    claimed_name: str


def audit_key() -> bytes:
    return settings.AUDIT_HMAC_KEY.encode()


def _describe_actor(actor) -> tuple[str, str, str]:
    if actor is None:
        return ActorType.SYSTEM, "", "system"
    if isinstance(actor, Anonymous):
        return ActorType.ANONYMOUS, "", actor.claimed_name[:150]
    if hasattr(actor, "audit_actor"):  # applications and emergency sessions
        return actor.audit_actor()
    return ActorType.USER, str(actor.pk), actor.get_username()


def _describe_target(target) -> tuple[str, str, str]:
    if target is None:
        return "", "", ""
    meta = target._meta
    return f"{meta.app_label}.{meta.model_name}", str(target.pk), str(target)[:200]


def _plain(value, path: str = "data"):
    """Audit data must survive a JSON round trip unchanged on both databases: strings,
    integers, booleans, None, lists and string-keyed objects only."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise TypeError(f"audit {path} is outside the 64-bit integer range")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _plain(item, f"{path}.{key}") for key, item in value.items()}
    raise TypeError(f"audit {path} holds a {type(value).__name__}; use str or int")


def _request_context(request: HttpRequest | None) -> dict:
    if request is None:
        return {"ip": "", "user_agent": "", "request_id": ""}
    return {
        "ip": client_ip(request),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:400],
        "request_id": getattr(request, "request_id", ""),
    }


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = datetime(1970, 1, 1)  # SQLite hands back naive datetimes, in UTC
MICROSECOND = timedelta(microseconds=1)


def epoch_micros(moment: datetime) -> int:
    return (moment - (EPOCH if moment.tzinfo else EPOCH_NAIVE)) // MICROSECOND


def sealed_values(event: AuditEvent) -> tuple:
    return tuple(
        epoch_micros(event.recorded_at) if name == "recorded_at" else getattr(event, name)
        for name in chain.SEALED_FIELDS
    )


_HEAD_TABLE = ChainHead._meta.db_table
_LOCK_HEAD_SQL = {
    True: f"SELECT sequence, mac FROM {_HEAD_TABLE} WHERE id = 1 FOR UPDATE",  # noqa: S608
    # SQLite has no row locks; BEGIN IMMEDIATE (settings) already serialises writers.
    False: f"SELECT sequence, mac FROM {_HEAD_TABLE} WHERE id = 1",  # noqa: S608
}
_MOVE_HEAD_SQL = f"UPDATE {_HEAD_TABLE} SET sequence = %s, mac = %s WHERE id = 1"  # noqa: S608
_NEW_IDS_SQL = (f"SELECT id FROM {AuditEvent._meta.db_table} "  # noqa: S608
                "WHERE sequence > %s AND sequence <= %s ORDER BY sequence")


_KINDS = frozenset(EventKind.values)


def record(
    kind: str,
    *,
    actor,
    target: models.Model | None = None,
    reason: str = "",
    data: dict | None = None,
    request: HttpRequest | None = None,
    outcome: str = Outcome.SUCCESS,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction.

    Takes the chain head under a row lock (held until the caller commits, which keeps the
    sequence gapless), seals the event with the previous MAC and moves the head. Raises
    AuditWriteError on any database failure so the caller's change rolls back with it.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}: add it to audit/catalogue.py")
    actor_type, actor_id, actor_label = _describe_actor(actor)
    target_type, target_id, target_label = _describe_target(target)
    # A door other than the pages (a Slack button) marks its request; every event the
    # services write for that request then says which door it came through.
    via = getattr(request, "audit_via", "") if request is not None else ""
    if via:
        data = {**(data or {}), "via": via}
    event = AuditEvent(
        recorded_at=timezone.now(), kind=kind, outcome=outcome,
        actor_type=actor_type, actor_id=actor_id, actor_label=actor_label,
        target_type=target_type, target_id=target_id, target_label=target_label,
        reason=reason, data=_plain(data or {}), **_request_context(request),
    )
    try:
        # No savepoint: a failure here must doom the caller's whole transaction anyway.
        # Prepared statements: every audited change passes here.
        with transaction.atomic(savepoint=False), prepared_cursor() as cursor:
            head = _locked_head(cursor)
            event.sequence = head[0] + 1
            event.mac = chain.seal(audit_key(), head[1], sealed_values(event))
            move_head = (_MOVE_HEAD_SQL, [event.sequence, event.mac])
            if connection.vendor == "postgresql":
                fast_insert(event, with_first=move_head)  # one round trip for both
            else:
                fast_insert(event)
                cursor.execute(*move_head)
    except DatabaseError as exc:
        raise AuditWriteError(f"the audit trail could not be written ({exc})") from exc
    return event


def _locked_head(cursor) -> tuple[int, str]:
    """The chain head's sequence and MAC, its row locked until the caller's transaction ends."""
    cursor.execute(_LOCK_HEAD_SQL[connection.features.has_select_for_update])
    head = cursor.fetchone()
    if head is None:
        raise AuditWriteError("the audit chain head is missing")
    return head


def record_many(kind: str, entries: list[tuple[models.Model, dict]], *, actor,
                reason: str = "", outcome: str = Outcome.SUCCESS) -> list[AuditEvent]:
    """Append one `kind` event per (target, data) of `entries`, in order, inside the caller's
    transaction: the events record() would append one call at a time, for a service that
    changes many objects at once (the expiry sweep).

    The same chain rules: the head taken under its row lock until the caller commits, each
    event sealed with the MAC before it, the head moved one event at a time (its triggers
    allow no jump), AuditWriteError on any database failure. What it saves is round trips and
    per-row work: one bulk insert of all the events, one pipelined batch of head moves. The
    head row gains a version per event until the caller commits: keep batches to hundreds."""
    if kind not in _KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}: add it to audit/catalogue.py")
    if not entries:
        return []
    actor_type, actor_id, actor_label = _describe_actor(actor)
    now, key = timezone.now(), audit_key()
    events = [AuditEvent(
        recorded_at=now, kind=kind, outcome=outcome, actor_type=actor_type, actor_id=actor_id,
        actor_label=actor_label, reason=reason, data=_plain(data or {}), ip="", user_agent="",
        request_id="", **dict(zip(("target_type", "target_id", "target_label"),
                                  _describe_target(target), strict=True)),
    ) for target, data in entries]
    try:
        with transaction.atomic(savepoint=False), prepared_cursor() as cursor:
            first, mac = _locked_head(cursor)
            sequence = first
            for event in events:
                sequence += 1
                event.sequence = sequence
                event.mac = mac = chain.seal(key, mac, sealed_values(event))
            insert_rows(AuditEvent, [row_values(event) for event in events])
            cursor.execute(_NEW_IDS_SQL, [first, sequence])
            for event, (pk,) in zip(events, cursor.fetchall(), strict=True):
                event.pk, event._state.adding, event._state.db = pk, False, connection.alias
            _walk_head(cursor, events)
    except DatabaseError as exc:
        raise AuditWriteError(f"the audit trail could not be written ({exc})") from exc
    return events


# PostgreSQL walks the head over the new events in one statement: still one UPDATE (and one
# check by its triggers) per event, without a client round trip each.
_WALK_HEAD_SQL = (
    "DO $$ BEGIN FOR step IN 1..{steps} LOOP "  # noqa: S608 (table names and a count only)
    f"UPDATE {_HEAD_TABLE} SET sequence = sequence + 1, mac = (SELECT mac FROM "
    f"{AuditEvent._meta.db_table} WHERE sequence = {_HEAD_TABLE}.sequence + 1) WHERE id = 1; "
    "END LOOP; END $$"
)


def _walk_head(cursor, events: list[AuditEvent]) -> None:
    """Move the head over `events`, just inserted, to the last of them."""
    if connection.vendor != "postgresql":
        cursor.executemany(_MOVE_HEAD_SQL, [(event.sequence, event.mac) for event in events])
        return
    cursor.execute(_WALK_HEAD_SQL.format(steps=len(events)))
    cursor.execute(_LOCK_HEAD_SQL[True])
    if tuple(cursor.fetchone()) != (events[-1].sequence, events[-1].mac):
        raise AuditWriteError("the audit chain head did not reach the last event written")


def _stored_sql(vendor: str) -> str:
    columns = list(chain.SEALED_FIELDS)
    if vendor == "sqlite":
        # As text: sqlite3's registered timestamp converter costs more than the HMAC.
        columns[1] = "CAST(recorded_at AS TEXT)"
    return (
        f"SELECT {', '.join(columns)}, mac FROM {AuditEvent._meta.db_table} "  # noqa: S608
        "WHERE sequence > %s AND sequence <= %s ORDER BY sequence"
    )


def _stored_micros(value) -> int:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return epoch_micros(value)


def _stored_data(text: str):
    data = orjson.loads(text)
    # A literal backslash (and so an escaped NUL) shows in the JSON text as two backslashes.
    return walk_strings(data, unescape_nul) if "\\\\" in text else data


def stored_rows(after_sequence: int = 0, up_to: int | None = None):
    """Events as the verifier reads them: (*SEALED_FIELDS, mac) ordered by sequence.

    Read with plain SQL rather than the ORM: verification is bound by per-row cost, and the
    ORM's conversions cost several times the HMAC itself. Undoes the same NUL escaping the
    model fields apply."""
    with connection.cursor() as cursor:
        cursor.execute(_stored_sql(connection.vendor), [after_sequence, up_to or 2**62])
        while batch := cursor.fetchmany(5000):
            for (sequence, recorded_at, kind, outcome, actor_type, actor_id, actor_label,
                 target_type, target_id, target_label, reason, data, ip, user_agent,
                 request_id, mac) in batch:
                yield (
                    sequence, _stored_micros(recorded_at), kind, outcome, actor_type, actor_id,
                    unescape_nul(actor_label), target_type, target_id,
                    unescape_nul(target_label), unescape_nul(reason), _stored_data(data), ip,
                    unescape_nul(user_agent), request_id, mac,
                )


PARALLEL_MIN_EVENTS = 50_000


def verify_trail(
    checkpoints: dict[int, str] | None = None, *, workers: int | None = None
) -> chain.ChainReport:
    """Verify the whole trail against the key, the chain head and any outside checkpoints.

    Long trails are checked by several processes at once, each over a range of sequence
    numbers anchored on the stored MAC before it (which the range before verifies), so the
    verdict is the same as one pass but bound by the cores, not one core.
    """
    head = ChainHead.objects.get(pk=1)
    if workers is None:
        long_trail = head.sequence >= PARALLEL_MIN_EVENTS
        workers = min(len(os.sched_getaffinity(0)), 4) if long_trail else 1
    if workers < 2 or not _can_use_processes():
        return check_rows(stored_rows(), head.sequence, head.mac, checkpoints)
    report = _verify_in_parallel(head.sequence, workers, checkpoints)
    return _judge(report, head.sequence, head.mac, checkpoints)


def _can_use_processes() -> bool:
    """Other processes cannot see an in-memory SQLite database, and our connection cannot be
    closed (to keep it out of the children) in the middle of a transaction."""
    in_memory = connection.vendor == "sqlite" and connection.is_in_memory_db()
    return not in_memory and not connection.in_atomic_block


def _verify_in_parallel(events: int, workers: int, checkpoints) -> chain.ChainReport:
    import multiprocessing

    from django.db import connections

    step = -(-events // workers)
    ranges = [(low, low + step if low + step < events else None, checkpoints)
              for low in range(0, events, step)]
    connections.close_all()  # children must open their own connections, never share ours
    with multiprocessing.get_context("fork").Pool(len(ranges)) as pool:
        reports = pool.map(_verify_range, ranges)
    merged = chain.ChainReport(0, 0, chain.GENESIS_MAC)
    for report in reports:
        merged = chain.ChainReport(merged.count + report.count, report.last_sequence,
                                   report.last_mac, report.problem)
        if report.problem:
            break
    return merged


def _verify_range(bounds: tuple) -> chain.ChainReport:
    """Worker: verify events low+1 .. high (to the end when high is None)."""
    low, high, checkpoints = bounds
    try:
        anchor = chain.GENESIS_MAC
        if low:
            anchor = AuditEvent.objects.filter(sequence=low).values_list("mac", flat=True).first()
            if anchor is None:
                missing = f"event {low} is missing (deleted or renumbered)"
                return chain.ChainReport(0, low - 1, "", missing)
        report = chain.verify(audit_key(), stored_rows(low, high), start_sequence=low,
                              start_mac=anchor, checkpoints=checkpoints)
        if report.intact and high is not None and report.last_sequence != high:
            report.problem = f"event {report.last_sequence + 1} is missing (deleted or renumbered)"
        return report
    finally:
        connection.close()


def check_rows(
    rows, head_sequence: int, head_mac: str, checkpoints: dict[int, str] | None = None
) -> chain.ChainReport:
    """The verdict on stored rows: each MAC, the sequence, the head and the checkpoints."""
    report = chain.verify(audit_key(), rows, checkpoints=checkpoints)
    return _judge(report, head_sequence, head_mac, checkpoints)


def _judge(report: chain.ChainReport, head_sequence: int, head_mac: str, checkpoints):
    if not report.intact:
        return report
    if head_sequence != report.last_sequence or head_mac != report.last_mac:
        report.problem = (
            f"the chain head is at event {head_sequence} but the trail ends at event "
            f"{report.last_sequence}: events were deleted or the head was altered"
        )
    elif checkpoints and max(checkpoints) > report.last_sequence:
        report.problem = (
            f"a checkpoint records event {max(checkpoints)} but the trail ends at event "
            f"{report.last_sequence}: events after it were deleted"
        )
    return report


def write_checkpoint() -> Checkpoint:
    """Verify the trail, then store the chain head as a new object in the checkpoint storage
    outside the database (audit.checkpoints; also a syslog line when configured) and keep a
    copy in the database for the admin and /healthz. Runs hourly, also in hours without
    events, so a deleted tail is caught against the stored checkpoints."""
    report = verify_trail()
    head = ChainHead.objects.get(pk=1)
    now = timezone.now()
    store_checkpoint(head.sequence, head.mac, now)
    send_to_syslog(head.sequence, head.mac, now)
    with transaction.atomic():
        checkpoint = Checkpoint.objects.create(
            sequence=head.sequence, mac=head.mac, written_at=now,
            verified=report.intact, problem=report.problem,
        )
        record_heartbeat(CHECKPOINT_HEARTBEAT)
        if not report.intact:
            from audit.alerts import alert_security_reviewers

            event = record(
                EventKind.CHAIN_BROKEN, actor=None, outcome=Outcome.FAILURE,
                reason=report.problem, data={"sequence": head.sequence},
            )
            alert_security_reviewers(event)
    return checkpoint


def record_heartbeat(name: str = SCHEDULER_HEARTBEAT) -> Heartbeat:
    """Stamp `name` as alive now. Run by the periodic schedule, so a fresh stamp proves the
    scheduler picked the job up and a worker executed it."""
    heartbeat, _ = Heartbeat.objects.update_or_create(
        name=name, defaults={"beat_at": timezone.now()}
    )
    return heartbeat


@transaction.atomic
def refuse_admin_request(*, actor, what: str, data: dict,
                         request: HttpRequest | None = None) -> AuditEvent:
    """Audit a staff member's admin action, button or page that their permissions do not
    allow; the caller then answers 403. Called outside any other transaction, so the refusal
    is kept although the request fails."""
    return record(EventKind.ADMIN_ACTION_REFUSED, actor=actor, outcome=Outcome.DENIED,
                  reason=f"Refused: {what}", data=data, request=request)

"""The one writer of audit events, and the trail's other state changes (heartbeats,
checkpoints)."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.client_ip import client_ip
from audit import chain
from audit.catalogue import ActorType, EventKind, Outcome
from audit.models import AuditEvent, ChainHead, Checkpoint, Heartbeat

SCHEDULER_HEARTBEAT = "scheduler"
CHECKPOINT_HEARTBEAT = "checkpoint"
CHECKPOINT_FILE = "audit-checkpoints.jsonl"


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
    if value is None or isinstance(value, (str, bool, int)):
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


def sealed_values(event: AuditEvent) -> tuple:
    return tuple(
        event.recorded_at.isoformat() if name == "recorded_at" else getattr(event, name)
        for name in chain.SEALED_FIELDS
    )


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
    if kind not in EventKind.values:
        raise ValueError(f"unknown audit event kind {kind!r}: add it to audit/catalogue.py")
    actor_type, actor_id, actor_label = _describe_actor(actor)
    target_type, target_id, target_label = _describe_target(target)
    event = AuditEvent(
        recorded_at=timezone.now(), kind=kind, outcome=outcome,
        actor_type=actor_type, actor_id=actor_id, actor_label=actor_label,
        target_type=target_type, target_id=target_id, target_label=target_label,
        reason=reason, data=_plain(data or {}), **_request_context(request),
    )
    try:
        with transaction.atomic():
            head = ChainHead.objects.select_for_update().get(pk=1)
            event.sequence = head.sequence + 1
            event.mac = chain.seal(audit_key(), head.mac, sealed_values(event))
            event.save(force_insert=True)
            head.sequence, head.mac = event.sequence, event.mac
            head.save(update_fields=["sequence", "mac"])
    except (DatabaseError, ChainHead.DoesNotExist) as exc:
        raise AuditWriteError(f"the audit trail could not be written ({exc})") from exc
    return event


def stored_rows(after_sequence: int = 0):
    """Events as the verifier reads them: (*SEALED_FIELDS, mac) ordered by sequence."""
    rows = (
        AuditEvent.objects.filter(sequence__gt=after_sequence)
        .order_by("sequence")
        .values_list(*chain.SEALED_FIELDS, "mac")
        .iterator(chunk_size=5000)
    )
    for row in rows:
        yield (row[0], row[1].isoformat(), *row[2:])


def verify_trail(checkpoints: dict[int, str] | None = None) -> chain.ChainReport:
    """Verify the whole trail against the key, the chain head and any outside checkpoints."""
    head = ChainHead.objects.get(pk=1)
    return check_rows(stored_rows(), head.sequence, head.mac, checkpoints)


def check_rows(
    rows, head_sequence: int, head_mac: str, checkpoints: dict[int, str] | None = None
) -> chain.ChainReport:
    """The verdict on stored rows: each MAC, the sequence, the head and the checkpoints."""
    report = chain.verify(audit_key(), rows, checkpoints=checkpoints)
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


def read_checkpoints(path: Path) -> dict[int, str]:
    checkpoints = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            checkpoints[int(entry["sequence"])] = str(entry["mac"])
    return checkpoints


def write_checkpoint() -> Checkpoint:
    """Verify the trail, then append the chain head to the checkpoint file outside the
    database (fsynced) and keep a copy in the database for the admin and /healthz. Runs hourly,
    also in hours without events, so a deleted tail is caught against the file."""
    report = verify_trail()
    head = ChainHead.objects.get(pk=1)
    now = timezone.now()
    line = json.dumps({"sequence": head.sequence, "mac": head.mac, "written_at": now.isoformat()})
    directory = Path(settings.CHECKPOINT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / CHECKPOINT_FILE, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
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

"""Streams of the audit trail to SIEMs: their configuration (audited), and the sender that
moves each stream's cursor through the chain.

The sender claims a stream under a lease (SELECT ... FOR UPDATE SKIP LOCKED, then a fresh
token and `claimed_until`), reads the next events after `sent_through` in sequence order,
sends them outside any transaction, and only then moves the cursor, conditional on its token.
Every network operation ends before the lease does (siem/transports.py), so two workers on
two nodes never send one stream at once; one that lost its lease cannot move the cursor.
Never lost (the cursor moves only after the destination accepted the batch), in order (one
sender per stream, sequence order), at least once (a crash between the send and the cursor
move sends that batch again; the verifier and the SIEM de-duplicate by sequence)."""

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit import chain
from audit.catalogue import EventKind
from audit.models import AuditEvent, ChainHead
from audit.services import record, stored_rows
from recovery.crypto import decrypt_field, encrypt_field
from siem import messages, transports
from siem.models import SiemStream

CONFIG_FIELDS = ("name", "kind", "address", "tls", "tls_ca_file", "tls_server_name", "enabled",
                 "start_from")
LEASE = timedelta(seconds=settings.SIEM_LEASE_SECONDS)
# A send must end well inside the lease, whatever the clocks of two nodes disagree by.
SEND_WINDOW_SECONDS = settings.SIEM_LEASE_SECONDS / 2
MAX_BACKOFF_SECONDS = settings.SIEM_MAX_BACKOFF_SECONDS


class InvalidStream(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_destination(kind: str, address: str, *, tls: bool = False,
                      tls_ca_file: str = "") -> None:
    """Refuses a destination that could not work, or would send the trail in the clear to
    another machine over HTTP. Raises InvalidStream naming the field."""
    address = address.strip()
    if kind == SiemStream.Kind.SYSLOG:
        try:
            transports.split_address(address)
        except ValueError as exc:
            raise InvalidStream("address", str(exc)) from None
        if tls_ca_file and not tls_ca_file.startswith("/"):
            raise InvalidStream("tls_ca_file", "The CA file is an absolute path.")
    elif kind == SiemStream.Kind.JSONL_FILE:
        if not address.startswith("/") or "\x00" in address:
            raise InvalidStream("address", "A JSON lines file is an absolute path.")
    elif kind == SiemStream.Kind.JSONL_HTTP:
        _check_url(address)
    else:
        raise InvalidStream("kind", "Unknown kind of stream.")
    if tls and kind != SiemStream.Kind.SYSLOG:
        raise InvalidStream("tls", "TLS is a syslog setting; an HTTP stream uses an https URL.")


def _check_url(address: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise InvalidStream("address", "An HTTP stream needs an https:// URL.")
    if parts.scheme == "http" and not transports.is_loopback(parts.hostname):
        raise InvalidStream("address", "Only a receiver on this machine may use plain http://; "
                                       "the audit trail leaves it over https://.")
    if parts.username or parts.password:
        raise InvalidStream("address", "Put the credential in the bearer token, not the URL.")


def chain_head() -> int:
    return ChainHead.objects.values_list("sequence", flat=True).get(pk=1)


@transaction.atomic
def save_stream(stream: SiemStream, *, actor, bearer_token: str = "", request=None) -> list[str]:
    """Create or change a stream as edited (its form checked it) and audit what changed; the
    bearer token, when typed, replaces the stored one (encrypted) and is audited only as
    replaced. A new stream starts at the chain's beginning or at its head (start_from).
    Returns the changed fields."""
    created = stream.pk is None
    before = ({} if created else
              SiemStream.objects.select_for_update().filter(pk=stream.pk)
              .values(*CONFIG_FIELDS).first() or {})
    changed = [name for name in CONFIG_FIELDS if before.get(name) != getattr(stream, name)]
    if bearer_token:
        stream.bearer_token_encrypted = encrypt_field(bearer_token)
        changed.append("bearer_token")
    if created:
        stream.sent_through = (chain_head() if stream.start_from == SiemStream.Start.NOW
                               else 0)
        stream.save()
    elif changed:
        stream.save(update_fields=[f for f in CONFIG_FIELDS if f in changed] +
                    (["bearer_token_encrypted"] if bearer_token else []))
    if changed:
        after = {name: getattr(stream, name) for name in CONFIG_FIELDS}
        record(EventKind.SIEM_STREAM_CHANGED, actor=actor, target=stream, request=request,
               data={"stream": stream.name, "created": created, "changed": changed,
                     "before": before, "after": after, "sent_through": stream.sent_through})
    return changed


@transaction.atomic
def delete_stream(stream: SiemStream, *, actor, request=None) -> None:
    """Stop and remove a stream, audited with where it had reached."""
    stream = SiemStream.objects.select_for_update().get(pk=stream.pk)
    record(EventKind.SIEM_STREAM_CHANGED, actor=actor, target=stream, request=request,
           data={"stream": stream.name, "deleted": True, "sent_through": stream.sent_through,
                 "address": stream.address})
    stream.delete()


@dataclass
class Lease:
    stream_id: int
    token: str
    deadline: float  # time.monotonic() by which the send must be over


def behind() -> Q:
    """Enabled streams with events after their cursor (one subquery on the chain head)."""
    head = ChainHead.objects.filter(pk=1).values("sequence")
    return Q(enabled=True, sent_through__lt=head)


def due() -> Q:
    now = timezone.now()
    return (behind() & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)))


@transaction.atomic
def claim_stream(*, stream_id: int | None = None) -> Lease | None:
    """Lease one due stream (or `stream_id`, due or in backoff) to this sender. SKIP LOCKED
    lets senders on several nodes claim at once without waiting on each other."""
    now = timezone.now()
    if stream_id is None:
        candidates = SiemStream.objects.filter(due()).order_by("next_attempt_at", "pk")
    else:
        candidates = SiemStream.objects.filter(
            Q(pk=stream_id, enabled=True)
            & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)))
    stream = candidates.select_for_update(skip_locked=True).first()
    if stream is None:
        return None
    stream.claimed_until, stream.lease_token = now + LEASE, secrets.token_hex(16)
    stream.save(update_fields=["claimed_until", "lease_token"])
    return Lease(stream.pk, stream.lease_token, time.monotonic() + SEND_WINDOW_SECONDS)


def leased(lease: Lease):
    """The stream, only while this sender still holds it: every write after the claim is an
    UPDATE ... WHERE lease_token = %s. These writes touch only progress columns, which the
    history leaves out (they are not configuration), so update() skips nothing it keeps."""
    return SiemStream.objects.filter(pk=lease.stream_id, lease_token=lease.token)


def send_batch(lease: Lease) -> int:
    """Send the next batch of the leased stream and move its cursor; returns how many events
    went (0: caught up, or the lease was lost). A failure is recorded on the stream with its
    backoff, and raised as transports.TransportError or messages.MessageTooLarge."""
    stream = leased(lease).first()
    if stream is None:
        return 0
    rows = list(stored_rows(stream.sent_through,
                            min(chain_head(), stream.sent_through + settings.SIEM_BATCH_SIZE)))
    if not rows:
        return 0
    previous = _mac_before(stream.sent_through)
    build = messages.syslog_message if stream.kind == SiemStream.Kind.SYSLOG else \
        messages.json_line
    try:
        batch = _messages(rows, previous, build)
        rows = rows[:len(batch)]  # the events before one too large still go
        token = decrypt_field(stream.bearer_token_encrypted) if \
            stream.bearer_token_encrypted else ""
        transports.send(stream, batch, deadline=lease.deadline, bearer_token=token)
    except (transports.TransportError, messages.MessageTooLarge) as exc:
        _failed(lease, stream, str(exc))
        raise
    leased(lease).filter(sent_through=stream.sent_through).update(
        sent_through=rows[-1][0], last_sent_at=timezone.now(), last_error="", failures=0,
        next_attempt_at=None)
    return len(rows)


def _messages(rows: list[tuple], previous: str, build) -> list[bytes]:
    """Each row's message, up to the first too large to send (raised if it is the first)."""
    batch = []
    for row in rows:
        try:
            batch.append(build(row, previous))
        except messages.MessageTooLarge:
            if not batch:
                raise
            break
        previous = row[-1]
    return batch


def _mac_before(sequence: int) -> str:
    if sequence == 0:
        return chain.GENESIS_MAC
    return AuditEvent.objects.values_list("mac", flat=True).get(sequence=sequence)


def _failed(lease: Lease, stream: SiemStream, error: str) -> None:
    ceiling = min(5 * 2 ** stream.failures, MAX_BACKOFF_SECONDS)
    leased(lease).update(last_error=error[:2000], failures=F("failures") + 1,
                         next_attempt_at=timezone.now() + timedelta(seconds=ceiling),
                         claimed_until=None, lease_token="")


def release(lease: Lease) -> None:
    leased(lease).update(claimed_until=None, lease_token="")


def send_stream(lease: Lease) -> int:
    """Send batches of the leased stream until it is caught up or the send window closes,
    then release it. Returns how many events went; a failure is left on the stream."""
    sent = 0
    try:
        while time.monotonic() < lease.deadline - 1 and (count := send_batch(lease)):
            sent += count
    except (transports.TransportError, messages.MessageTooLarge):
        return sent  # recorded on the stream by send_batch, with its backoff
    release(lease)
    return sent


def send_due_streams() -> int:
    """Every due stream, each claimed in turn (the worker's task), while the task has time
    for one more whole send before django-q2 would kill it. Returns events sent."""
    sent, seen, lease = 0, set(), None
    stop_claiming_at = time.monotonic() + settings.Q_CLUSTER["timeout"] - LEASE.total_seconds()
    while (time.monotonic() < stop_claiming_at and (lease := claim_stream())
           and lease.stream_id not in seen):
        seen.add(lease.stream_id)
        sent += send_stream(lease)
    if lease is not None and lease.stream_id in seen:
        release(lease)
    return sent


def send_now(stream: SiemStream) -> tuple[int, str]:
    """Send one stream at once, whatever its backoff (the admin's button). Returns how many
    events went and the stream's error, if any."""
    lease = claim_stream(stream_id=stream.pk)
    if lease is None:
        return 0, "another worker is sending this stream, or it is paused"
    sent = send_stream(lease)
    return sent, SiemStream.objects.values_list("last_error", flat=True).get(pk=stream.pk)


def stream_if_behind() -> bool:
    """The worker's one-second tick: start the sender when a stream is due. One indexed
    query on a handful of rows; nothing when every stream is level with the chain head."""
    if not SiemStream.objects.filter(due()).exists():
        return False
    from django_q.tasks import async_task

    async_task("siem.tasks.send_due_streams")
    return True


def lag(stream: SiemStream, head: int | None = None) -> int:
    """Events recorded that the destination has not accepted yet."""
    return max((chain_head() if head is None else head) - stream.sent_through, 0)

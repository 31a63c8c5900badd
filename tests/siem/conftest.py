"""What the SIEM stream tests share: a real rsyslogd, streams made through the service, and
many events written quickly through the one audit writer."""

import io

import pytest
from django.core.management import call_command
from django.db import transaction

from audit.catalogue import EventKind, Outcome
from audit.models import ChainHead
from audit.services import record, record_many
from siem import services
from siem.models import SiemStream
from tests.siem.servers import rsyslog_tcp_server

# User text that must reach the SIEM unchanged and still verify (QUALITY Q27).
AWKWARD = 'quote " backslash \\ bracket ] CR\r LF\n NUL\x00 DEL\x7f tab\t RTL\u202e é 𝄞'


@pytest.fixture
def rsyslog():
    with rsyslog_tcp_server() as server:
        yield server


def make_stream(kind: str, address: str, *, actor=None, **fields) -> SiemStream:
    stream = SiemStream(name=f"{kind.replace('_', '-')}-test", kind=kind, address=address,
                        **fields)
    services.save_stream(stream, actor=actor)
    return stream


def write_events(count: int, *, actor, batch: int = 500) -> None:
    """`count` events through record_many, `batch` to a transaction, with awkward text in
    some: the expiry sweep's shape, at speed."""
    for start in range(0, count, batch):
        size = min(batch, count - start)
        with transaction.atomic():
            record_many(EventKind.GRANT_EXPIRED, [
                (actor, {"n": start + n, "note": AWKWARD if n % 97 == 0 else "plain"})
                for n in range(size)], actor=None)


def write_awkward_events(actor) -> None:
    """Events at the limits: the longest reason, user text with every awkward character."""
    with transaction.atomic():
        record(EventKind.GRANT_ACTIVATED, actor=actor, target=actor, reason="r" * 2000,
               data={"ticket": AWKWARD})
        record(EventKind.SECOND_FACTOR_CHANGE_REFUSED, actor=actor, reason=AWKWARD,
               outcome=Outcome.DENIED, data={AWKWARD: [1, -(2**63), True, None]})


def head() -> int:
    return ChainHead.objects.get(pk=1).sequence


def send_until_caught_up() -> int:
    sent = 0
    while count := services.send_due_streams():
        sent += count
    return sent


def verify_copy(path, *args) -> str:
    out = io.StringIO()
    call_command("verify_siem_copy", str(path), *args, stdout=out)
    return out.getvalue()


def sequences(lines: list[str]) -> list[int]:
    """The seq= of each stream message in the order received."""
    import re

    return [int(found.group(1)) for line in lines
            if (found := re.search(r'\[breakglass@32473 seq="(\d+)"', line))]

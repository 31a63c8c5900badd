"""Several senders at once on PostgreSQL (real threads, real row locks): each stream has one
sender at a time, so its copy arrives in order with nothing sent twice."""

import threading

import pytest
from django.db import connection

from siem import services
from siem.models import SiemStream
from tests.siem.conftest import head, make_stream, sequences, verify_copy, write_events

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_four_workers_at_once_never_interleave_a_stream(rsyslog, admin_user, settings,
                                                       tmp_path):
    settings.SIEM_BATCH_SIZE = 40  # many batches, many claims racing
    make_stream(SiemStream.Kind.SYSLOG, rsyslog.address, actor=admin_user)
    file_stream = SiemStream(name="file", kind=SiemStream.Kind.JSONL_FILE,
                             address=str(tmp_path / "copy.jsonl"))
    services.save_stream(file_stream, actor=admin_user)
    write_events(2000, actor=admin_user)
    target, sent, start = head(), [], threading.Barrier(4)

    def worker():
        start.wait()
        try:
            while SiemStream.objects.filter(sent_through__lt=target).exists():
                sent.append(services.send_due_streams())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(sent) == target * 2
    assert sequences(rsyslog.lines()) == list(range(1, target + 1))
    assert f"{target} events (#1 to #{target}), 0 repeated" in verify_copy(rsyslog.received)
    assert f"{target} events (#1 to #{target}), 0 repeated" in verify_copy(
        tmp_path / "copy.jsonl", "--format", "jsonl", "--from-database")

"""The audit trail streamed to a real rsyslogd over TCP: every event arrives, in order, each
verifiable with the audit key alone; a destination that is down loses nothing."""

import time

import pytest
from django.core.management.base import CommandError

from audit.models import AuditEvent
from siem import services
from siem.models import SiemStream
from tests.siem.conftest import (
    head,
    make_stream,
    send_until_caught_up,
    sequences,
    verify_copy,
    write_awkward_events,
    write_events,
)

pytestmark = pytest.mark.django_db


def test_ten_thousand_events_arrive_in_order_and_each_verifies(rsyslog, admin_user):
    make_stream(SiemStream.Kind.SYSLOG, rsyslog.address, actor=admin_user)
    write_awkward_events(admin_user)
    started = time.monotonic()
    write_events(10_000, actor=admin_user)
    written = time.monotonic()
    assert send_until_caught_up() == head() >= 10_003
    sent = time.monotonic()
    lines = rsyslog.lines()
    assert sequences(lines) == list(range(1, head() + 1))
    report = verify_copy(rsyslog.received, "--through", str(head()), "--from-database")
    assert f"SIEM copy intact: {head()} events (#1 to #{head()}), 0 repeated" in report
    assert SiemStream.objects.get().sent_through == head()
    print(f"10,000 events: written in {written - started:.1f} s, "
          f"streamed in {sent - written:.1f} s")


def test_each_message_is_rfc5424_with_the_mac_in_structured_data(rsyslog, admin_user):
    make_stream(SiemStream.Kind.SYSLOG, rsyslog.address, actor=admin_user)
    write_awkward_events(admin_user)
    send_until_caught_up()
    refused = AuditEvent.objects.get(kind="auth.second_factor_change_refused")
    line = next(line for line in rsyslog.lines() if f'seq="{refused.sequence}"' in line)
    previous = AuditEvent.objects.get(sequence=refused.sequence - 1).mac
    # authpriv.warning; MSGID holds at most 32 characters (the MSG has the whole kind).
    assert line.startswith("<84>1 ")
    assert " breakglass - auth.second_factor_change_refuse [breakglass@32473 " in line
    assert f'seq="{refused.sequence}" mac="{refused.mac}" prev="{previous}"] [' in line
    assert "\\u007f" in line and "\x7f" not in line


def test_events_written_while_rsyslog_is_down_arrive_after_it_returns(rsyslog, admin_user):
    stream = make_stream(SiemStream.Kind.SYSLOG, rsyslog.address, actor=admin_user)
    write_events(300, actor=admin_user)
    send_until_caught_up()
    rsyslog.stop()
    write_events(700, actor=admin_user)

    assert services.send_due_streams() == 0
    stream.refresh_from_db()
    assert stream.sent_through == 301
    assert "cannot connect" in stream.last_error and stream.failures == 1
    assert stream.next_attempt_at is not None and services.lag(stream) == 700
    assert services.send_due_streams() == 0  # backing off: not even tried
    assert SiemStream.objects.get().failures == 1

    rsyslog.start()
    assert services.send_now(stream) == (700, "")
    stream.refresh_from_db()
    assert (stream.sent_through, stream.last_error, stream.failures) == (1001, "", 0)
    assert sequences(rsyslog.lines()) == list(range(1, 1002))
    assert "1001 events (#1 to #1001)" in verify_copy(rsyslog.received, "--through", "1001")


def test_the_verifier_reports_a_tampered_missing_or_forged_line(rsyslog, admin_user, tmp_path):
    make_stream(SiemStream.Kind.SYSLOG, rsyslog.address, actor=admin_user)
    write_events(50, actor=admin_user)
    send_until_caught_up()
    lines = rsyslog.lines()
    index = next(i for i, line in enumerate(lines) if 'seq="20"' in line)

    def copy_with(changed: list[str]):
        path = tmp_path / "copy.log"
        path.write_text("\n".join(changed) + "\n")
        return path

    edited = [*lines[:index], lines[index].replace('"n":18', '"n":81'), *lines[index + 1:]]
    with pytest.raises(CommandError, match=r"event 20\).*edited or forged"):
        verify_copy(copy_with(edited))
    with pytest.raises(CommandError, match="events 20 to 20 are missing"):
        verify_copy(copy_with([*lines[:index], *lines[index + 1:]]))
    with pytest.raises(CommandError, match="ends at event 51, before event 60"):
        verify_copy(copy_with(lines), "--through", "60")
    # Sent again after a crash: repeats are tolerated, and counted.
    again = [*lines, *lines[index:index + 5]]
    assert "51 events (#1 to #51), 5 repeated" in verify_copy(copy_with(again))


def test_a_stream_started_from_now_verifies_against_the_database(rsyslog, admin_user):
    write_events(40, actor=admin_user)
    make_stream(SiemStream.Kind.SYSLOG, rsyslog.address, actor=admin_user,
                start_from=SiemStream.Start.NOW)
    write_events(10, actor=admin_user)
    send_until_caught_up()
    # Its first event is its own creation (41); nothing before it is sent.
    assert sequences(rsyslog.lines()) == list(range(41, 52))
    assert "11 events (#41 to #51)" in verify_copy(rsyslog.received, "--from-database")


def test_an_event_larger_than_the_destination_takes_stops_the_stream(rsyslog, admin_user,
                                                                      settings):
    settings.SIEM_MAX_MESSAGE_BYTES = 2048
    stream = make_stream(SiemStream.Kind.SYSLOG, rsyslog.address, actor=admin_user)
    write_awkward_events(admin_user)  # its 2000-character reason is written as is
    write_events(5, actor=admin_user)
    assert send_until_caught_up() == 1  # the stream's creation, before the large event
    stream.refresh_from_db()
    assert stream.sent_through == 1
    assert "event 2 is" in stream.last_error and "SIEM_MAX_MESSAGE_BYTES" in stream.last_error
    settings.SIEM_MAX_MESSAGE_BYTES = 64 * 1024
    assert services.send_now(stream) == (7, "")


def test_the_workers_tick_starts_the_sender_only_when_a_stream_is_behind(rsyslog, admin_user):
    stream = make_stream(SiemStream.Kind.SYSLOG, rsyslog.address, actor=admin_user)
    assert services.stream_if_behind() is True  # its own creation event; tasks run inline
    assert services.stream_if_behind() is False
    write_events(3, actor=admin_user)
    stream.enabled = False
    services.save_stream(stream, actor=admin_user)
    assert services.stream_if_behind() is False  # paused
    stream.enabled = True
    services.save_stream(stream, actor=admin_user)
    assert services.stream_if_behind() is True
    assert SiemStream.objects.get().sent_through == head()

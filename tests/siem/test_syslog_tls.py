"""Syslog over TLS (RFC 5425) to a real rsyslogd with the gtls driver and a throwaway CA."""

import pytest

from siem import services
from siem.models import SiemStream
from tests.siem.conftest import head, make_stream, send_until_caught_up, sequences, verify_copy
from tests.siem.conftest import write_events as write
from tests.siem.servers import Certificates, rsyslog_tcp_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def rsyslog_tls():
    with rsyslog_tcp_server(tls=True) as server:
        yield server


def test_the_trail_arrives_over_tls_and_verifies(rsyslog_tls, admin_user):
    make_stream(SiemStream.Kind.SYSLOG, rsyslog_tls.address, actor=admin_user, tls=True,
                tls_ca_file=str(rsyslog_tls.tls.ca), tls_server_name="localhost")
    write(1500, actor=admin_user)
    assert send_until_caught_up() == head() == 1501
    assert sequences(rsyslog_tls.lines()) == list(range(1, 1502))
    assert "1501 events (#1 to #1501)" in verify_copy(rsyslog_tls.received, "--through", "1501")


def test_a_server_certificate_from_another_ca_is_refused(rsyslog_tls, admin_user, tmp_path):
    stranger = Certificates(tmp_path)
    stream = make_stream(SiemStream.Kind.SYSLOG, rsyslog_tls.address, actor=admin_user,
                         tls=True, tls_ca_file=str(stranger.ca), tls_server_name="localhost")
    write(5, actor=admin_user)
    assert services.send_due_streams() == 0
    stream.refresh_from_db()
    assert stream.sent_through == 0 and "CERTIFICATE_VERIFY_FAILED" in stream.last_error
    assert sequences(rsyslog_tls.lines()) == []


def test_a_server_name_the_certificate_lacks_is_refused(rsyslog_tls, admin_user):
    stream = make_stream(SiemStream.Kind.SYSLOG, rsyslog_tls.address, actor=admin_user,
                         tls=True, tls_ca_file=str(rsyslog_tls.tls.ca),
                         tls_server_name="siem.example.org")
    assert services.send_due_streams() == 0
    stream.refresh_from_db()
    assert stream.sent_through == 0 and "siem.example.org" in stream.last_error

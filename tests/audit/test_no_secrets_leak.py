"""QUALITY Q9: after sign-ins and alerts carrying a sentinel secret, neither a full database
dump nor the captured logs contain it."""

import logging

import pytest
from django.db import connection, transaction
from django.urls import reverse

from accounts.services import issue_backup_codes
from audit.alerts import alert
from audit.catalogue import EventKind
from audit.outbox import send_due_deliveries
from audit.services import record
from tests.audit.fakes import FakeTwilioTransport

pytestmark = pytest.mark.django_db

SENTINEL = "Sentinel-7Q2-zx91-secret"


def database_dump() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from introspection)
            chunks.append(repr(cursor.fetchall()))
    return "\n".join(chunks)


def test_no_sentinel_secret_reaches_the_database_or_the_logs(
    client, member, reviewer, settings, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "1" * 32, "token"
    settings.TWILIO_FROM_NUMBER = "+15555550000"
    from audit.twilio_sms import TwilioSmsBackend

    transport = FakeTwilioTransport()
    monkeypatch.setattr(TwilioSmsBackend, "http_client", transport)
    reviewer.mobile = "+15555550124"
    reviewer.save()
    member.set_password(SENTINEL)
    member.save()
    codes = issue_backup_codes(member, actor=member)

    # Wrong and right passwords, a wrong then a right backup code, the lockout alerts.
    login = reverse("accounts:login")
    client.post(login, {"username": member.username, "password": SENTINEL + "x"})
    client.post(login, {"username": member.username, "password": SENTINEL})
    client.post(reverse("accounts:verify"), {"code": SENTINEL})
    client.post(reverse("accounts:verify"), {"code": codes[0]})
    client.post(reverse("accounts:logout"))
    for _ in range(6):
        client.post(login, {"username": reviewer.username, "password": SENTINEL})
    # An alert whose SMS carries a one-time code, as emergency codes will.
    with transaction.atomic():
        event = record(EventKind.LOCKOUT, actor=None)
        alert(event, users=[reviewer], channels=["sms", "email"], sensitive=True,
              template="one_time_code",
              context={"code": SENTINEL, "purpose": "a test", "valid_minutes": 10})
    send_due_deliveries()
    from django.core import mail

    assert any(SENTINEL in message["body"] for message in transport.sent)  # it was sent
    assert any(SENTINEL in message.body for message in mail.outbox)

    dump = database_dump()
    assert SENTINEL not in dump
    for code in codes:
        assert code not in dump and code.replace("-", "") not in dump
    assert SENTINEL not in caplog.text
    assert codes[0] not in caplog.text

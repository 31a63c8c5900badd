"""QUALITY Q27: user text (reasons, names) with any Unicode, CR/LF, NUL or RTL marks
round-trips through audit events and alerts without breaking the chain, logs or templates."""

import logging

import pytest
from django.core import mail
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.alerts import alert
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from audit.services import Anonymous, record, verify_trail

pytestmark = pytest.mark.django_db

NASTY = st.sampled_from(["\x00", "\r\n", "\n", "\u202e", "\u200f", "\\", "\\0", "\\\\0", "'", '"',
                         "<script>", "{{ x }}", "{% now %}", "\ufeff", "😀", "\U0010ffff"])
# Surrogates cannot be encoded as UTF-8 by any database or mail system, so they are excluded.
TEXT = st.lists(st.one_of(st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
                          NASTY), max_size=8).map("".join)
HYPOTHESIS = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(reason=TEXT, name=TEXT, key=TEXT, value=TEXT)
def test_any_text_round_trips_through_the_trail(member, reason, name, key, value):
    with transaction.atomic():
        event = record(EventKind.SIGN_IN_FAILED, actor=Anonymous(name), reason=reason,
                       data={key: [value, {"nested": value}]})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.reason == reason
    assert stored.actor_label == name[:150]
    assert stored.data == {key: [value, {"nested": value}]}
    assert verify_trail().intact


@HYPOTHESIS
@given(reason=TEXT)
def test_any_text_survives_alert_templates_and_logs(reviewer, caplog, reason):
    caplog.set_level(logging.DEBUG)
    mail.outbox.clear()
    with transaction.atomic():
        event = record(EventKind.LOCKOUT, actor=None, reason=reason)
        alert(event, users=[reviewer], channels=["email"])
    send_due_deliveries()
    assert Delivery.objects.get(event=event).status == Delivery.Status.SENT
    sent = mail.outbox[-1]
    if "\x00" not in reason and "\r" not in reason and reason.strip():
        assert reason.strip().splitlines()[0] in sent.body
    assert "<script>" not in sent.alternatives[0][0]  # HTML is escaped
    for line in caplog.text.splitlines():
        assert "\x00" not in line

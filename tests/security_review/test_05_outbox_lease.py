"""The alert relay's lease (QUALITY Q29, Q42): a relay whose provider is slow never has its rows
taken over while it still holds them, a relay that lost a row's lease cannot change that row,
a sent delivery never changes state again, and every provider call is capped below the lease.

Two relays are interleaved by hand (a fake Twilio transport that, while answering, lets
simulated time pass and runs the second relay), and on PostgreSQL by real threads."""

import logging
import threading
import time
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit import outbox
from audit.alerts import alert
from audit.catalogue import EventKind
from audit.models import Delivery
from audit.outbox import send_due_deliveries
from audit.services import record
from audit.twilio_sms import TwilioSmsBackend
from tests.audit.fakes import FakeTwilioTransport

pytestmark = pytest.mark.django_db


class Clock:
    """Simulated time for everything that asks django.utils.timezone.now()."""

    def __init__(self):
        self.offset = timedelta()
        self.real_now = timezone.now

    def __call__(self):
        return self.real_now() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


class SlowTwilioTransport(FakeTwilioTransport):
    """Twilio answering after `answer_after` of simulated time; `during_call` runs once, on the
    call numbered `interrupt_on`, while the answer is still on its way."""

    def __init__(self, clock: Clock, answer_after: timedelta):
        super().__init__()
        self.clock, self.answer_after = clock, answer_after
        self.interrupt_on, self.during_call, self.fail_interrupted = 0, None, False
        self.lock = threading.Lock()

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False):
        with self.lock:
            number = self.calls + 1
            response = super().request(method, uri, params, data, headers, auth, timeout)
        self.clock.advance(self.answer_after)
        if number == self.interrupt_on and self.during_call:
            self.during_call()
            if self.fail_interrupted:
                raise TimeoutError("read timed out")
        return response

    def calls_per_body(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for message in self.sent:
            counts[message["body"]] = counts.get(message["body"], 0) + 1
        return counts


@pytest.fixture(autouse=True)
def relays_run_only_when_called(monkeypatch):
    """The tests run the relays themselves: the broker's nudge after each commit (which runs
    the relay inline under the test settings) stays out of the way."""
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock)
    return clock


@pytest.fixture
def on_call(reviewer):
    reviewer.mobile = "+15555550123"
    reviewer.save()
    return reviewer


def use_twilio(settings, monkeypatch, transport) -> None:
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    settings.TWILIO_AUTH_TOKEN = "test-token"
    settings.TWILIO_FROM_NUMBER = "+15555550000"
    monkeypatch.setattr(TwilioSmsBackend, "http_client", transport)


def sms_alerts(user, count: int) -> list[Delivery]:
    for number in range(count):
        with transaction.atomic():
            event = record(EventKind.LOCKOUT, actor=None, reason=f"failures, round {number}")
            alert(event, users=[user], channels=["sms"])
    return list(Delivery.objects.order_by("pk"))


def test_a_batch_slower_than_the_lease_sends_every_alert_exactly_once(
    clock, on_call, settings, monkeypatch,
):
    # Each answer takes 50 s (within one call's lease), so six alerts take five minutes: more
    # than one lease. During the third call a second relay wakes up, and finds quick answers.
    transport = SlowTwilioTransport(clock, answer_after=timedelta(seconds=50))
    use_twilio(settings, monkeypatch, transport)
    deliveries = sms_alerts(on_call, 6)

    def second_relay():
        transport.answer_after = timedelta()
        send_due_deliveries()
        transport.answer_after = timedelta(seconds=50)

    transport.interrupt_on, transport.during_call = 3, second_relay

    send_due_deliveries()

    assert transport.calls_per_body() == {d.body: 1 for d in deliveries}
    sent = {m["body"]: m["sid"] for m in transport.sent}
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.SENT
        assert delivery.provider_message_id == sent[delivery.body]


@pytest.mark.parametrize("late_answer", ["success", "timeout"])
def test_a_relay_that_lost_its_lease_cannot_change_the_sent_row(
    clock, on_call, settings, monkeypatch, caplog, late_answer,
):
    # The first answer arrives after the lease ran out (a provider slower than every timeout):
    # meanwhile a second relay took the row over and sent it.
    transport = SlowTwilioTransport(clock, answer_after=outbox.LEASE + timedelta(minutes=1))
    use_twilio(settings, monkeypatch, transport)
    [delivery] = sms_alerts(on_call, 1)
    seen_by_second_relay = {}

    def second_relay():
        transport.answer_after = timedelta(seconds=1)
        send_due_deliveries()
        seen_by_second_relay.update(Delivery.objects.values().get(pk=delivery.pk))

    transport.interrupt_on, transport.during_call = 1, second_relay
    transport.fail_interrupted = late_answer == "timeout"

    with caplog.at_level(logging.WARNING, logger="audit.outbox"):
        send_due_deliveries()
        send_due_deliveries()  # nothing is left to send, and nothing is sent again

    assert seen_by_second_relay["status"] == Delivery.Status.SENT
    assert Delivery.objects.values().get(pk=delivery.pk) == seen_by_second_relay
    assert transport.sent[1]["sid"] == seen_by_second_relay["provider_message_id"]
    assert transport.calls == 2  # the stale relay's call and the new owner's, never a third
    assert "lost its lease" in caplog.text


def test_a_sent_delivery_never_changes_state_again(on_call):
    [delivery] = sms_alerts(on_call, 1)
    send_due_deliveries()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    sent_as = delivery.provider_message_id

    with pytest.raises(DatabaseError), transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.PENDING)
    with pytest.raises(DatabaseError), transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(provider_message_id="forged")

    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider_message_id) == ("sent", sent_as)


def test_a_provider_timeout_at_or_above_the_lease_fails_the_checks(settings, monkeypatch):
    ids = lambda: {m.id for m in run_checks() if m.id.startswith("audit.")}  # noqa: E731
    assert not ids() & {"audit.E005"}

    smtp = {"BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "mail.example.com", "port": 25}}
    settings.MAILERS = {"default": smtp}
    assert "audit.E005" in ids()  # no timeout: an SMTP server that stalls holds the row

    settings.MAILERS = {"default": {**smtp, "OPTIONS": {**smtp["OPTIONS"], "timeout": 10}}}
    assert "audit.E005" not in ids()
    monkeypatch.setattr(outbox, "WEBHOOK_TIMEOUT_SECONDS", outbox.LEASE.total_seconds())
    assert "audit.E005" in ids()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_relay_threads_and_a_slow_provider_send_every_alert_exactly_once(
    on_call, settings, monkeypatch,
):
    # Real time, scaled down: a one-second lease, answers taking 0.3 s, eight alerts.
    monkeypatch.setattr(outbox, "LEASE", timedelta(seconds=1))
    transport = FakeTwilioTransport()
    slow_request = transport.request
    lock = threading.Lock()

    def request(*args, **kwargs):
        time.sleep(0.3)
        with lock:
            return slow_request(*args, **kwargs)

    monkeypatch.setattr(transport, "request", request)
    use_twilio(settings, monkeypatch, transport)
    deliveries = sms_alerts(on_call, 8)
    unsettled = Delivery.objects.exclude(status__in=[Delivery.Status.SENT,
                                                     Delivery.Status.FAILED])
    errors = []

    def relay(start_after: float) -> None:
        try:
            time.sleep(start_after)
            deadline = time.monotonic() + 20
            while unsettled.exists() and time.monotonic() < deadline:
                send_due_deliveries()
                time.sleep(0.05)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=relay, args=(delay,)) for delay in (0, 0.5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    bodies = [m["body"] for m in transport.sent]
    assert sorted(bodies) == sorted(d.body for d in deliveries)
    sent = {m["body"]: m["sid"] for m in transport.sent}
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.SENT
        assert delivery.provider_message_id == sent[delivery.body]


def test_a_relay_stops_claiming_before_the_workers_task_limit(
    clock, on_call, settings, monkeypatch,
):
    """django-q2 kills a task at Q_CLUSTER's timeout: a relay with a long backlog stops claiming
    in time, so it is never killed in the middle of a provider call; the next tick sends the
    rest, each exactly once."""
    transport = SlowTwilioTransport(clock, answer_after=timedelta(seconds=50))
    use_twilio(settings, monkeypatch, transport)
    deliveries = sms_alerts(on_call, 8)  # 8 × 50 s: longer than the task may run

    first = send_due_deliveries()

    limit = timedelta(seconds=settings.Q_CLUSTER["timeout"])
    assert 0 < first < len(deliveries)
    assert first * timedelta(seconds=50) < limit
    assert Delivery.objects.filter(status=Delivery.Status.SENDING).count() == 0
    assert send_due_deliveries() + send_due_deliveries() == len(deliveries) - first
    assert transport.calls_per_body() == {d.body: 1 for d in deliveries}

"""Hourly housekeeping: expired sessions, cooled-off lockout attempts, old sign-in records,
old alert bodies and old task results go, in batches; what still matters stays; each run that
changed something is one audit event with the counts."""

import pydoc
import uuid
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.sessions.models import Session
from django.db import connection, transaction
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Failure, Schedule, Success, Task
from django_q.monitor import save_task
from django_q.tasks import async_task

from audit import housekeeping
from audit.alerts import alert
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from audit.services import record
from tests.accounts.test_lockout import attempt, fail_five_times
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NOTHING = {name: 0 for name in housekeeping.STEPS}


def housekeeping_events():
    return AuditEvent.objects.filter(kind=EventKind.HOUSEKEEPING_DONE)


def test_expired_sessions_go_and_live_ones_stay(member, outsider):
    live, expired = Client(), Client()
    live.force_login(member)
    expired.force_login(outsider)
    Session.objects.filter(session_key=expired.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1))
    assert housekeeping.run() == {**NOTHING, "sessions": 1}
    assert list(Session.objects.values_list("session_key", flat=True)) == [
        live.session.session_key]


def test_a_cooled_off_attempt_goes_and_a_live_lockout_still_locks(client, member, outsider,
                                                                    settings):
    fail_five_times(client, member.username, REMOTE_ADDR="198.51.100.7")
    fail_five_times(client, outsider.username, REMOTE_ADDR="198.51.100.7")
    AccessAttempt.objects.filter(username=member.username).update(
        attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    just_inside = settings.AXES_COOLOFF_TIME - timedelta(minutes=1)
    AccessAttempt.objects.filter(username=outsider.username).update(
        attempt_time=F("attempt_time") - just_inside)

    assert housekeeping.run()["lockout_attempts"] == 1
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == [
        outsider.username]
    locked = attempt(client, outsider.username, PASSWORD, REMOTE_ADDR="198.51.100.7")
    assert locked.status_code == 429
    assert attempt(client, member.username, PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 302


def test_no_cool_off_means_attempts_are_kept(client, member, settings):
    fail_five_times(client, member.username, REMOTE_ADDR="198.51.100.7")
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(days=365))
    settings.AXES_COOLOFF_TIME = None
    assert housekeeping.run()["lockout_attempts"] == 0
    assert AccessAttempt.objects.count() == 1


def test_sign_in_records_older_than_their_retention_go(client, member, outsider, settings):
    settings.AXES_ENABLE_ACCESS_FAILURE_LOG = True
    for user in (member, outsider):
        attempt(client, user.username, REMOTE_ADDR="198.51.100.7")
        assert attempt(Client(), user.username, PASSWORD,
                       REMOTE_ADDR="198.51.100.7").status_code == 302
    assert AccessLog.objects.count() == AccessFailureLog.objects.count() == 2
    old = timedelta(days=settings.AXES_LOG_RETENTION_DAYS, minutes=1)
    for model in (AccessLog, AccessFailureLog):
        model.objects.filter(username=member.username).update(
            attempt_time=F("attempt_time") - old)

    counts = housekeeping.run()
    assert (counts["sign_in_logs"], counts["sign_in_failure_logs"]) == (1, 1)
    for model in (AccessLog, AccessFailureLog):
        assert list(model.objects.values_list("username", flat=True)) == [outsider.username]


# --- Alert bodies --------------------------------------------------------------------------

def lockout_alert(users, reason: str, channels=("email",)) -> AuditEvent:
    with transaction.atomic():
        event = record(EventKind.LOCKOUT, actor=None, reason=reason)
        alert(event, users=users, channels=channels)
    return event


def test_old_sent_alert_bodies_are_blanked_and_the_rows_kept(reviewer, monkeypatch, settings):
    days_ago = timezone.now() - timedelta(days=settings.ALERT_BODY_RETENTION_DAYS + 1)
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    with monkeypatch.context() as past:
        past.setattr(timezone, "now", lambda: days_ago)
        old_sent = lockout_alert([reviewer], "old and sent")
        send_due_deliveries()
        # Without a webhook address the webhook cannot succeed: dead-lettered at once.
        dead = lockout_alert([reviewer], "old and dead-lettered", channels=["webhook"])
        settings.ALERT_WEBHOOK_URL = ""
        send_due_deliveries()
    recent = lockout_alert([reviewer], "recent and sent")
    send_due_deliveries()
    with monkeypatch.context() as past:
        past.setattr(timezone, "now", lambda: days_ago)
        old_pending = lockout_alert([reviewer], "old and not sent yet")

    # The old alert, and the email that reported the dead letter back then.
    assert housekeeping.run()["alert_bodies"] == 2
    report = AuditEvent.objects.get(kind=EventKind.DELIVERY_FAILED)
    for event in (old_sent, report):
        blanked = Delivery.objects.get(event=event)
        assert (blanked.status, blanked.body, blanked.html_body) == (
            Delivery.Status.SENT, housekeeping.BODY_REMOVED, "")
        assert blanked.sent_at < days_ago + timedelta(minutes=1)
        assert blanked.recipient == reviewer.email and blanked.provider_message_id
    for event, status in [(recent, Delivery.Status.SENT), (dead, Delivery.Status.FAILED),
                          (old_pending, Delivery.Status.PENDING)]:
        kept = Delivery.objects.get(event=event)
        assert kept.status == status
        assert kept.body not in {housekeeping.BODY_REMOVED, ""}
    assert housekeeping.run()["alert_bodies"] == 0


# --- Task results --------------------------------------------------------------------------

def failed_task(func: str, *args) -> None:
    """What the cluster does with a task that raises: its monitor saves a Failure. (Inline
    tasks, as the tests run them, raise to the caller instead.)"""
    started = timezone.now()
    with pytest.raises(ValueError) as raised:
        pydoc.locate(func)(*args)
    save_task({"id": uuid.uuid4().hex, "name": f"failed-{func}", "func": func, "args": args,
               "kwargs": {}, "started": started, "stopped": timezone.now(),
               "result": str(raised.value), "success": False, "sync": True}, get_broker())


def test_old_task_results_go_in_batches(settings, monkeypatch):
    for number in range(5):
        async_task("math.floor", number + 0.5)
    failed_task("math.sqrt", -1)
    failed_task("math.sqrt", -4)
    assert (Success.objects.count(), Failure.objects.count()) == (5, 2)
    recent_success = Success.objects.order_by("pk").first()
    Task.objects.exclude(pk=recent_success.pk).update(
        stopped=F("stopped") - timedelta(days=settings.TASK_RESULT_RETENTION_DAYS, minutes=1))
    recent_failure = Failure.objects.order_by("pk").first()
    Task.objects.filter(success=False).exclude(pk=recent_failure.pk).update(
        stopped=F("stopped") - timedelta(days=settings.TASK_FAILURE_RETENTION_DAYS))

    monkeypatch.setattr(housekeeping, "BATCH_SIZE", 2)
    with CaptureQueriesContext(connection) as queries:
        counts = housekeeping.run()
    assert (counts["task_results"], counts["task_failures"]) == (4, 1)
    assert list(Task.objects.values_list("pk", flat=True).order_by("pk")) == sorted(
        [recent_success.pk, recent_failure.pk])
    task_deletes = [query for query in queries.captured_queries
                    if query["sql"].startswith('DELETE FROM "django_q_task"')]
    assert len(task_deletes) == 3  # successes in batches of 2, 2; the failure in one


# --- The run -------------------------------------------------------------------------------

def test_a_run_that_changed_something_is_one_audit_event_with_the_counts(member):
    stale = Client()
    stale.force_login(member)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    counts = housekeeping.run()
    [event] = housekeeping_events()
    assert event.data == counts == {**NOTHING, "sessions": 1}
    assert (event.actor_type, event.outcome) == ("system", "success")


def test_a_run_that_changed_nothing_records_nothing(verified_client, member):
    verified_client(member)
    assert housekeeping.run() == NOTHING
    assert not housekeeping_events().exists()


def test_a_failing_step_does_not_stop_the_others_and_is_recorded(member, monkeypatch):
    stale = Client()
    stale.force_login(member)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))

    def broken(now):
        raise RuntimeError("the table is gone")

    monkeypatch.setitem(housekeeping.STEPS, "lockout_attempts", broken)
    with pytest.raises(housekeeping.HousekeepingFailed, match="lockout_attempts"):
        housekeeping.run()
    assert not Session.objects.exists()
    [event] = housekeeping_events()
    assert (event.outcome, event.reason) == ("failure", "Failed: lockout_attempts")
    assert event.data["sessions"] == 1


def test_housekeeping_is_scheduled_hourly_after_migrate():
    schedule = Schedule.objects.get(name="periodic:housekeeping")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "audit.housekeeping.run", Schedule.MINUTES, 60)


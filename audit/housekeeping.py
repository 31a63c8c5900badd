"""Hourly housekeeping (PERIODIC_TASKS "housekeeping"): the tables that would otherwise grow
forever are trimmed, a thousand rows per transaction so a large backlog never holds a long
one, and each run that removed something is recorded as one audit event with the counts.

Never trimmed here: the audit trail (append-only), alerts not yet sent (the relay needs their
bodies) and dead-lettered alerts (an operator reads them and may send them again)."""

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from importlib import import_module

from axes.helpers import get_cool_off
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_q.models import Failure, Success

from api.models import KEY_LIFETIME, IdempotencyKey
from audit.catalogue import EventKind, Outcome
from audit.models import Delivery
from audit.outbox import REDACTED
from audit.services import record

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
BODY_REMOVED = "[removed after its retention period]"


class HousekeepingFailed(Exception):
    """A step failed (logged); the other steps ran and the run was recorded."""


def run() -> dict[str, int]:
    """Run every step, then record one HOUSEKEEPING_DONE event with the counts if anything
    changed. A failing step is logged and the others still run; the run then raises, so the
    task shows as failed. Idempotent: a second run finds nothing left to do."""
    now = timezone.now()
    counts: dict[str, int] = {}
    failed: list[str] = []
    for name, step in STEPS.items():
        try:
            counts[name] = step(now)
        except Exception:
            logger.exception("housekeeping: %s failed; the other steps still ran", name)
            failed.append(name)
    if any(counts.values()):
        with transaction.atomic():
            record(EventKind.HOUSEKEEPING_DONE, actor=None, data=counts,
                   outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
                   reason=f"Failed: {', '.join(failed)}" if failed else "")
    if failed:
        raise HousekeepingFailed(", ".join(failed))
    return counts


def clear_expired_sessions(now: datetime) -> int:
    """What `clearsessions` does, in batches and counted."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not issubclass(store, DatabaseSessionStore):
        store.clear_expired()  # cache and cookie sessions expire on their own; files go here
        return 0
    return delete_in_batches(store.get_model_class().objects.filter(expire_date__lt=now))


def delete_cooled_off_attempts(now: datetime) -> int:
    """django-axes counts only failures newer than the cool-off, so older attempts lock no
    one; a newer one must stay, or deleting it would lift a lockout."""
    cool_off = get_cool_off()
    if cool_off is None:  # no cool-off: a lockout lasts until an administrator lifts it
        return 0
    return delete_in_batches(AccessAttempt.objects.filter(attempt_time__lt=now - cool_off))


def delete_old_sign_in_logs(now: datetime) -> int:
    cutoff = now - timedelta(days=settings.AXES_LOG_RETENTION_DAYS)
    return delete_in_batches(AccessLog.objects.filter(attempt_time__lt=cutoff))


def delete_old_failure_logs(now: datetime) -> int:
    cutoff = now - timedelta(days=settings.AXES_LOG_RETENTION_DAYS)
    return delete_in_batches(AccessFailureLog.objects.filter(attempt_time__lt=cutoff))


def blank_old_alert_bodies(now: datetime) -> int:
    """Sent alerts keep their row (audit events, the admin and evidence packs name them; the
    database keeps a sent row's status, time and provider id) but lose what they said."""
    cutoff = now - timedelta(days=settings.ALERT_BODY_RETENTION_DAYS)
    sent = Delivery.objects.filter(status=Delivery.Status.SENT, sent_at__lt=cutoff).exclude(
        body__in=[BODY_REMOVED, REDACTED])
    changed = 0
    for batch in in_batches(sent):
        changed += batch.update(body=BODY_REMOVED, html_body="")
    return changed


def delete_old_task_results(now: datetime) -> int:
    cutoff = now - timedelta(days=settings.TASK_RESULT_RETENTION_DAYS)
    return delete_in_batches(Success.objects.filter(stopped__lt=cutoff))


def delete_old_task_failures(now: datetime) -> int:
    cutoff = now - timedelta(days=settings.TASK_FAILURE_RETENTION_DAYS)
    return delete_in_batches(Failure.objects.filter(stopped__lt=cutoff))


def delete_expired_idempotency_keys(now: datetime) -> int:
    """An API Idempotency-Key answers for 24 hours; after that its stored answer goes."""
    return delete_in_batches(IdempotencyKey.objects.filter(created_at__lte=now - KEY_LIFETIME))


STEPS: dict[str, Callable[[datetime], int]] = {
    "sessions": clear_expired_sessions,
    "lockout_attempts": delete_cooled_off_attempts,
    "sign_in_logs": delete_old_sign_in_logs,
    "sign_in_failure_logs": delete_old_failure_logs,
    "alert_bodies": blank_old_alert_bodies,
    "task_results": delete_old_task_results,
    "task_failures": delete_old_task_failures,
    "idempotency_keys": delete_expired_idempotency_keys,
}


def in_batches(queryset: QuerySet) -> Iterator[QuerySet]:
    """The rows of `queryset`, BATCH_SIZE at a time in primary-key order. The key only moves
    forward, so the loop ends even if a batch's rows still match afterwards."""
    last = None
    while True:
        page = queryset.order_by("pk") if last is None else (
            queryset.filter(pk__gt=last).order_by("pk"))
        keys = list(page.values_list("pk", flat=True)[:BATCH_SIZE])
        if not keys:
            return
        last = keys[-1]
        yield queryset.filter(pk__in=keys)


def delete_in_batches(queryset: QuerySet) -> int:
    """Delete in one transaction per batch; counts the rows of the queryset's own model (rows
    deleted with them by cascade, such as axes' attempt expirations, are not counted)."""
    deleted = 0
    for batch in in_batches(queryset):
        with transaction.atomic():
            _, per_model = batch.delete()
        deleted += sum(count for label, count in per_model.items()
                       if label in {queryset.model._meta.label,
                                    queryset.model._meta.concrete_model._meta.label})
    return deleted

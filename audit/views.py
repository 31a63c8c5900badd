from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from audit.models import Delivery, Heartbeat
from audit.services import CHECKPOINT_HEARTBEAT, SCHEDULER_HEARTBEAT


def _minutes(age) -> int:
    return int(age.total_seconds() // 60)


def health_problems() -> list[str]:
    """What is wrong with this deployment right now, in words an operator can act on."""
    now = timezone.now()
    try:
        beats = dict(Heartbeat.objects.values_list("name", "beat_at"))
        stuck = (
            Delivery.objects.filter(
                status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING],
                next_attempt_at__lt=now - settings.OUTBOX_MAX_AGE,
            )
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
    except DatabaseError:
        return ["database unreachable"]
    problems = []
    scheduler = beats.get(SCHEDULER_HEARTBEAT)
    if scheduler is None:
        problems.append("scheduler heartbeat missing: is `manage.py qcluster` running?")
    elif now - scheduler > settings.SCHEDULER_HEARTBEAT_MAX_AGE:
        problems.append(f"scheduler heartbeat is {_minutes(now - scheduler)} minutes old")
    if stuck is not None:
        problems.append(f"an alert has waited {_minutes(now - stuck)} minutes to be sent")
    checkpoint = beats.get(CHECKPOINT_HEARTBEAT)
    if checkpoint is None:
        problems.append("no audit checkpoint has been written yet")
    elif now - checkpoint > settings.CHECKPOINT_MAX_AGE:
        problems.append(f"the last audit checkpoint is {_minutes(now - checkpoint)} minutes old")
    return problems


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    problems = health_problems()
    if problems:
        return JsonResponse({"status": "unhealthy", "problems": problems}, status=503)
    return JsonResponse({"status": "ok", "problems": []})


@never_cache
@require_safe
def livez(request: HttpRequest) -> JsonResponse:
    """The process answers. Touches no database (no session, user or audit lookup either: the
    middleware reads none for a request without a session cookie), so a database outage never
    makes an orchestrator restart every web node at once."""
    return JsonResponse({"status": "ok"})


class _MigrationState:
    # Migrations only move forward while a node runs: once this process has seen them all
    # applied, planning them again (a costly load of every migration file) is never needed.
    all_applied = False


def unapplied_migrations() -> list[str]:
    if _MigrationState.all_applied:
        return []
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
    _MigrationState.all_applied = not names
    return names


def readiness_problems() -> list[str]:
    """Why this node must not take traffic now: the database unreachable (checked on every
    call), or migrations on disk that the database lacks. Background work (/healthz) is not
    asked: a stopped scheduler must not take every web node out of the load balancer."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        unapplied = unapplied_migrations()
    except DatabaseError:
        return ["database unreachable"]
    if unapplied:
        shown = ", ".join(unapplied[:5]) + (" ..." if len(unapplied) > 5 else "")
        return [f"migrations not applied ({len(unapplied)}): {shown}"]
    return []


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    problems = readiness_problems()
    if problems:
        return JsonResponse({"status": "not ready", "problems": problems}, status=503)
    return JsonResponse({"status": "ready"})

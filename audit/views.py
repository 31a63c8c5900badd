from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

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

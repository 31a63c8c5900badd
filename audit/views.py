from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.models import Heartbeat
from audit.services import SCHEDULER_HEARTBEAT


def health_problems() -> list[str]:
    """What is wrong with this deployment right now, in words an operator can act on."""
    try:
        heartbeat = Heartbeat.objects.filter(name=SCHEDULER_HEARTBEAT).first()
    except DatabaseError:
        return ["database unreachable"]
    if heartbeat is None:
        return ["scheduler heartbeat missing: is `manage.py qcluster` running?"]
    age = timezone.now() - heartbeat.beat_at
    if age > settings.SCHEDULER_HEARTBEAT_MAX_AGE:
        return [f"scheduler heartbeat is {int(age.total_seconds() // 60)} minutes old"]
    return []


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    problems = health_problems()
    if problems:
        return JsonResponse({"status": "unhealthy", "problems": problems}, status=503)
    return JsonResponse({"status": "ok", "problems": []})

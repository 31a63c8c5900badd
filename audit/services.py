from django.utils import timezone

from audit.models import Heartbeat

SCHEDULER_HEARTBEAT = "scheduler"


def record_heartbeat(name: str = SCHEDULER_HEARTBEAT) -> Heartbeat:
    """Stamp `name` as alive now. Run by the periodic schedule, so a fresh stamp proves the
    scheduler picked the job up and a worker executed it."""
    heartbeat, _ = Heartbeat.objects.update_or_create(
        name=name, defaults={"beat_at": timezone.now()}
    )
    return heartbeat

"""django-q2 entry points (scheduled in settings.PERIODIC_TASKS)."""

from review import services


def escalate_overdue_reviews() -> int:
    return services.escalate_overdue()

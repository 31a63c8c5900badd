"""Periodic jobs are declared in settings.PERIODIC_TASKS and mirrored into django-q2."""

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

PREFIX = "periodic:"


def sync_periodic_tasks(**kwargs) -> None:
    """Create or update one django-q2 Schedule per declared task and drop undeclared ones."""
    declared = settings.PERIODIC_TASKS
    for name, (func, minutes) in declared.items():
        Schedule.objects.update_or_create(
            name=PREFIX + name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
            create_defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
                "next_run": timezone.now(),
            },
        )
    stale = Schedule.objects.filter(name__startswith=PREFIX).exclude(
        name__in=[PREFIX + name for name in declared]
    )
    stale.delete()

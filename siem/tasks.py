"""django-q2 entry points: load, call a service, stay idempotent (a task may run twice)."""

from siem import services


def send_due_streams() -> int:
    return services.send_due_streams()

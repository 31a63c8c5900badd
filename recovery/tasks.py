"""django-q2 entry points: call a service, stay idempotent."""

from recovery import services


def lapse_due_attempts() -> int:
    return services.lapse_due_attempts()


def send_rotation_reminders() -> int:
    return services.send_rotation_reminders()

"""django-q2 entry points: load, call a service, stay idempotent (a task may run twice)."""

from audit import outbox, services


def record_heartbeat() -> None:
    services.record_heartbeat()


def send_due_deliveries() -> int:
    return outbox.send_due_deliveries()


def write_checkpoint() -> None:
    services.write_checkpoint()

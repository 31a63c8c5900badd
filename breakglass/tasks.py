"""django-q2 entry points: load by id, call a service, stay idempotent."""

from breakglass import services


def expire_grant(grant_id: int) -> bool:
    return services.expire_grant(grant_id)


def expire_due_grants() -> int:
    return services.expire_due_grants()


def send_expiry_reminders() -> int:
    return services.send_expiry_reminders()


def lapse_due_requests() -> int:
    from breakglass.access_requests import lapse_due_requests

    return lapse_due_requests()

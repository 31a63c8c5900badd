"""django-q2 entry points: load by id, call a service, stay idempotent."""

from breakglass.services import grants, requests
from breakglass.services.errors import TransitionRefused


def expire_grant(grant_id: int) -> bool:
    """The one-off job at a grant's instant. A grant ended since (revoked, or expired by the
    minute sweep) is done, not an error."""
    try:
        return grants.expire_grant(grant_id)
    except TransitionRefused:
        return False


def expire_due_grants() -> int:
    return grants.expire_due_grants()


def send_expiry_reminders() -> int:
    return grants.send_expiry_reminders()


def lapse_due_requests() -> int:
    return requests.lapse_due_requests()

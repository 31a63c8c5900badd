"""django-q2 entry points: load by id, call a service, stay idempotent."""

from breakglass.services import connectors, grants, requests
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


def reconcile_connectors() -> int:
    """Every minute: each connector's target compared with the access decision, drift
    repaired or reported, pending revocations retried, overdue ones alerted."""
    return len(connectors.reconcile_all())

"""Deprovisioning: the directory says a person left (SCIM `active: false`, or a DELETE).
Everything they hold ends in the same transaction as the deactivation, so no request can slip
between a revoked grant and a still-valid session."""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from audit.alerts import alert
from audit.catalogue import EventKind
from audit.services import record
from breakglass.models import AccessRequest, Grant
from breakglass.services.grants import end_grant_now
from breakglass.services.requests import withdraw_requests_of


@transaction.atomic
def deprovision(user: User, *, actor, reason: str, request: HttpRequest | None = None,
                deleted: bool = False) -> User:
    """Deactivate `user` and end what they hold: every active grant (revoked, everyone
    concerned told), every pending access request (withdrawn), every signed-in session.
    `deleted` records that the directory deleted the account; the row stays, so the audit
    trail and history keep pointing at it.

    Runs the whole sweep even for an account already inactive: a lock from an abort link
    deactivates without ending the holder's other grants. Records account.deprovisioned and
    alerts the security reviewers. Break-glass rights and memberships are left as they are:
    an inactive account is refused everything (breakglass.access.decide)."""
    user = User.objects.select_for_update().get(pk=user.pk)
    was_active = user.is_active
    if was_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    grant_ids = list(Grant.objects.select_for_update().filter(
        user=user, status=Grant.Status.ACTIVE).order_by("pk").values_list("pk", flat=True))
    # Locked now, so the count recorded below is what is withdrawn after it.
    pending_requests = list(AccessRequest.objects.select_for_update().filter(
        requester=user, status=AccessRequest.Status.PENDING).values_list("pk", flat=True))
    session_keys = signed_in_sessions(user)
    directory_groups = sorted(user.directory_groups.values_list("display_name", flat=True))
    event = record(EventKind.ACCOUNT_DEPROVISIONED, actor=actor, target=user, reason=reason,
                   request=request,
                   data={"username": user.get_username(), "was_active": was_active,
                         "deleted": deleted, "grants_ended": len(grant_ids),
                         "sessions_ended": len(session_keys),
                         "requests_withdrawn": len(pending_requests),
                         "directory_groups_left": directory_groups})
    alert(event, users=User.objects.security_reviewers(), template="event")
    for grant in Grant.objects.filter(pk__in=grant_ids).select_related("group", "user"):
        end_grant_now(grant, actor=actor, reason=reason, request=request, tell=True,
                      cause={"deprovisioned": event.sequence})
    withdraw_requests_of(user, actor=actor, reason=reason,
                         cause={"deprovisioned": event.sequence}, request=request)
    # Out of every directory group too: a later reactivation by an administrator must not
    # bring back access through groups the directory no longer shows for this person.
    # (From each group's side: the groups' history records the change, as SCIM's own do.)
    for directory_group in user.directory_groups.all():
        directory_group.members.remove(user)
    store = import_module(settings.SESSION_ENGINE).SessionStore
    for key in session_keys:
        store(session_key=key).delete()
    return user


def signed_in_sessions(user: User) -> list[str]:
    """The keys of `user`'s unexpired sessions. A scan that decodes each one: database
    sessions carry the user only inside their signed payload. Acceptable here: a break-glass
    deployment has few sessions, and this runs only when someone is deprovisioned."""
    wanted = str(user.pk)
    sessions = Session.objects.filter(expire_date__gt=timezone.now())
    return [session.session_key for session in sessions.iterator()
            if str(session.get_decoded().get(SESSION_KEY)) == wanted]

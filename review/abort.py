"""One-click abort (issue "Not us — revoke and lock"): every break-glass alert to a reviewer or
an owner carries a link signed for that person and that grant. Signed in, after a confirmation
page (POST with CSRF), it ends the grant at once and locks the holder's account pending
review. Each link works once and for 24 hours; a replayed, expired, forged or borrowed link
does nothing but leave an audit event."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.alerts import alert
from audit.catalogue import EventKind, Outcome
from audit.services import record
from breakglass.models import Grant
from review.models import AbortUse

SALT = "breakglass.abort.v1"
MAX_AGE = timedelta(hours=24)


class AbortRefused(Exception):
    status = 400


def abort_token(grant: Grant, user: User) -> str:
    return signing.dumps({"g": grant.pk, "u": user.pk, "n": secrets.token_urlsafe(8)},
                         salt=SALT, compress=True)


def abort_link(grant: Grant, user: User) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("review:abort", args=[abort_token(grant,
                                                                                      user)])


def read(token: str) -> tuple[int, int]:
    """(grant id, user id), or AbortRefused saying why."""
    try:
        payload = signing.loads(token, salt=SALT, max_age=MAX_AGE)
    except signing.SignatureExpired as expired:
        raise AbortRefused("This link has expired (links work for 24 hours): end the access "
                           "from the group page or the admin.") from expired
    except signing.BadSignature as forged:
        raise AbortRefused("This link is not valid.") from forged
    if not (isinstance(payload, dict) and isinstance(payload.get("g"), int)
            and isinstance(payload.get("u"), int)):
        raise AbortRefused("This link is not valid.")
    return payload["g"], payload["u"]


def may_abort(user: User, grant: Grant) -> bool:
    """Security reviewers and the group's owners (as the alert went to them)."""
    if user.is_superuser or User.objects.security_reviewers().filter(pk=user.pk).exists():
        return True
    return grant.group.owners.filter(pk=user.pk).exists()


def check(token: str, *, user: User, request: HttpRequest | None = None) -> Grant:
    """The grant a link may abort for `user`; refusals are audited."""
    try:
        grant_id, user_id = read(token)
        grant = Grant.objects.select_related("group", "user").filter(pk=grant_id).first()
        if grant is None:
            raise AbortRefused("This link is not valid.")
        if user_id != user.pk or not may_abort(user, grant):
            raise AbortRefused("This link was sent to someone else: use your own.")
        if AbortUse.objects.filter(token_digest=_digest(token)).exists():
            raise AbortRefused("This link has already been used.")
    except AbortRefused as refused:
        refuse(token, user=user, why=str(refused), request=request)
        raise
    return grant


def refuse(token: str, *, user, why: str, request=None) -> None:
    with transaction.atomic():
        record(EventKind.ABORT_REFUSED, actor=user, request=request, outcome=Outcome.DENIED,
               reason=why, data={"token": _digest(token)[:16]})


def abort(token: str, *, user: User, request: HttpRequest | None = None) -> Grant:
    """End the grant now and lock its holder, once. The second use of a link is refused."""
    from breakglass.services import _end, concerned

    grant = check(token, user=user, request=request)
    now = timezone.now()
    try:
        with transaction.atomic():
            AbortUse.objects.create(token_digest=_digest(token), grant=grant, used_by=user,
                                    used_at=now)
            grant = Grant.objects.select_for_update().select_related("group", "user").get(
                pk=grant.pk)
            holder = User.objects.select_for_update().get(pk=grant.user_id)
            reason = (f"Not us: {user.get_username()} revoked this access and locked "
                      f"{holder.get_username()} from the alert's link.")
            ended = grant.gives_access(now)
            if ended:
                _end(grant, Grant.Status.REVOKED, ended_at=now, actor=user, reason=reason,
                     request=request, cause={"abort_link": True})
            was_active = holder.is_active
            holder.is_active = False
            holder.save(update_fields=["is_active"])
            if hasattr(grant, "review"):
                grant.review.aborted_at = now
                grant.review.save(update_fields=["aborted_at"])
            event = record(EventKind.GRANT_ABORTED, actor=user, target=grant, reason=reason,
                           request=request, data={
                               "holder": holder.get_username(), "grant_ended": ended,
                               "account_locked": was_active, "group": grant.group.slug})
            alert(event, users=[*concerned(grant), holder], template="event")
    except IntegrityError as replayed:
        refuse(token, user=user, why="This link has already been used.", request=request)
        raise AbortRefused("This link has already been used.") from replayed
    return grant


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def reopen_account(holder: User, *, actor: User, request: HttpRequest | None = None) -> bool:
    """An administrator gives back an account that an abort link locked, once every review of
    the aborted uses is closed ("locked pending review"). False when it was not locked."""
    from review.models import Review

    if not (actor.is_active and actor.is_superuser):
        raise AbortRefused("Only administrators reopen accounts.")
    pending = Review.objects.filter(grant__user=holder, aborted_at__isnull=False,
                                    outcome="").order_by("pk").first()
    if pending is not None:
        raise AbortRefused(f"Review #{pending.pk} of the aborted use is still open: a security "
                           "reviewer closes it first.")
    with transaction.atomic():
        holder = User.objects.select_for_update().get(pk=holder.pk)
        if holder.is_active:
            return False
        holder.is_active = True
        holder.save(update_fields=["is_active"])
        reviews = list(Review.objects.filter(grant__user=holder, aborted_at__isnull=False)
                       .values_list("pk", flat=True))
        event = record(EventKind.ACCOUNT_REOPENED, actor=actor, target=holder, request=request,
                       data={"reviews": reviews})
        alert(event, users=[*User.objects.security_reviewers(), holder], template="event")
    return True

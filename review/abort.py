"""One-click abort (issue "Not us — revoke and lock"): every break-glass alert to a reviewer or
an owner carries a link signed for that person and that grant. Signed in, after a confirmation
page (POST with CSRF), it ends the grant at once and locks the holder's account pending
review. Each link works once and for 24 hours; a replayed, expired, forged or borrowed link
does nothing but leave an audit event."""

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from audit.alerts import alert
from audit.catalogue import EventKind, Outcome
from audit.services import record
from breakglass.models import Grant
from breakglass.services import grants
from breakglass.services.errors import NotAllowed
from review.abort_links import AbortRefused, abort_link, abort_token, read, token_digest
from review.models import AbortUse

__all__ = ["AbortRefused", "abort", "abort_link", "abort_token", "check", "reopen_account"]


def check(token: str, *, actor: User, request: HttpRequest | None = None) -> Grant:
    """The grant a link may abort for `actor`; refusals are audited."""
    try:
        grant_id, user_id = read(token)
        grant = Grant.objects.select_related("group", "user").filter(pk=grant_id).first()
        if grant is None:
            raise AbortRefused("This link is not valid.")
        if user_id != actor.pk or not grants.may_abort(actor, grant):
            raise AbortRefused("This link was sent to someone else: use your own.")
        if AbortUse.objects.filter(token_digest=token_digest(token)).exists():
            raise AbortRefused("This link has already been used.")
    except AbortRefused as refused:
        refuse(token, actor=actor, why=str(refused), request=request)
        raise
    return grant


def refuse(token: str, *, actor, why: str, request=None) -> None:
    with transaction.atomic():
        record(EventKind.ABORT_REFUSED, actor=actor, request=request, outcome=Outcome.DENIED,
               reason=why, data={"token": token_digest(token)[:16]})


def abort(token: str, *, actor: User, request: HttpRequest | None = None) -> Grant:
    """End the grant now and lock its holder, once (breakglass's abort_grant). The second use
    of a link is refused."""
    grant = check(token, actor=actor, request=request)
    try:
        with transaction.atomic():
            AbortUse.objects.create(token_digest=token_digest(token), grant=grant, used_by=actor,
                                    used_at=timezone.now())
            grants.abort_grant(grant, actor=actor, request=request)
    except IntegrityError as replayed:
        refuse(token, actor=actor, why="This link has already been used.", request=request)
        raise AbortRefused("This link has already been used.") from replayed
    except NotAllowed as refused:
        refuse(token, actor=actor, why=str(refused), request=request)
        raise AbortRefused(str(refused)) from refused
    return grant


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

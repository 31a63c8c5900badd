"""API applications: creating one, replacing its token, and the actions it reports as taken
under a grant."""

from datetime import timedelta

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.catalogue import EventKind
from audit.services import record
from breakglass.models import Application, Grant, GrantActivity, Scope
from breakglass.services.errors import InvalidInput, TransitionRefused
from breakglass.tokens import new_token

MAX_ACTIVITY_SKEW = timedelta(minutes=5)


@transaction.atomic
def create_application(name: str, scopes: list[str], *, actor) -> tuple[Application, str]:
    """A new API application; returns it with its token, which is never stored or shown
    again."""
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        known = ", ".join(Scope.values)
        raise InvalidInput("scope", f"unknown scope {unknown[0]!r}; known: {known}")
    token, prefix, digest = new_token()
    application = Application.objects.create(name=name, scopes=sorted(set(scopes)),
                                             token_prefix=prefix, token_hash=digest)
    record(EventKind.APPLICATION_CREATED, actor=actor, target=application,
           data={"scopes": application.scopes, "token_prefix": prefix})
    return application, token


@transaction.atomic
def rotate_token(application: Application, *, actor,
                 request: HttpRequest | None = None) -> str:
    """Replace an application's token ("Generate token"): the old one stops working at once."""
    application = Application.objects.select_for_update().get(pk=application.pk)
    old_prefix = application.token_prefix
    token, application.token_prefix, application.token_hash = new_token()
    application.save(update_fields=["token_prefix", "token_hash"])
    record(EventKind.TOKEN_ROTATED, actor=actor, target=application, request=request,
           data={"old_prefix": old_prefix, "new_prefix": application.token_prefix})
    return token


@transaction.atomic
def report_activity(grant: Grant, *, actor: Application, action: str, detail: str = "",
                    at=None, request: HttpRequest | None = None) -> GrantActivity:
    """An application reports an action taken under an active grant; refused (409) once it
    ended. `at` may not lie in the future (beyond a little clock skew) or before the
    activation."""
    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    now = timezone.now()
    if not grant.gives_access(now):
        raise TransitionRefused(f"this grant is {grant.get_status_display().lower()}, not active")
    at = at or now
    if timezone.is_naive(at):
        raise InvalidInput("at", "needs a time zone offset (or Z for UTC)")
    if at > now + MAX_ACTIVITY_SKEW:
        raise InvalidInput("at", "lies in the future")
    if at < grant.activated_at - MAX_ACTIVITY_SKEW:
        raise InvalidInput("at", "lies before the grant was activated")
    activity = GrantActivity.objects.create(grant=grant, action=action, detail=detail,
                                            happened_at=at, reported_at=now, application=actor)
    record(EventKind.GRANT_ACTIVITY, actor=actor, target=grant, request=request,
           data={"action": action, "detail": detail[:500], "at": at.isoformat(),
                 "activity": activity.pk})
    return activity

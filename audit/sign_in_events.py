"""Forwards contrib.auth and django-axes sign-in signals to the audit trail: the one place
where signals feed auditing, because these events start inside third-party code."""

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.utils import timezone

from audit.alerts import alert_security_reviewers
from audit.catalogue import EventKind, Outcome
from audit.models import AuditEvent
from audit.services import Anonymous, record


def _account(username: str):
    return get_user_model().objects.filter(username=username[:150]).first()


def signed_in(sender, request, user, **kwargs) -> None:
    if getattr(user, "backend", "") == SSO_BACKEND:
        amr = list(getattr(user, "sso_claims", {}).get("amr") or [])
        record(EventKind.SSO_SIGN_IN, actor=user, target=user, request=request,
               data={"amr": [str(method)[:20] for method in amr[:10]]})
        return
    record(EventKind.SIGN_IN, actor=user, target=user, request=request)


SSO_BACKEND = "accounts.sso.SsoBackend"


def signed_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        record(EventKind.SIGN_OUT, actor=user, target=user, request=request)


def sign_in_failed(sender, credentials, request=None, **kwargs) -> None:
    # Django has already masked the password in `credentials`; only the name is kept.
    username = str(credentials.get("username", ""))
    record(
        EventKind.SIGN_IN_FAILED, actor=Anonymous(username), target=_account(username),
        request=request, outcome=Outcome.FAILURE,
    )


@transaction.atomic
def locked_out(sender, request, username, ip_address, **kwargs) -> None:
    """axes signals on every attempt while locked; record and alert once per cool-off."""
    username = str(username or "")
    recent = AuditEvent.objects.filter(
        kind=EventKind.LOCKOUT, actor_label=username[:150], ip=ip_address or "",
        recorded_at__gte=timezone.now() - settings.AXES_COOLOFF_TIME,
    )
    if recent.exists():
        return
    event = record(
        EventKind.LOCKOUT, actor=Anonymous(username), target=_account(username),
        request=request, outcome=Outcome.DENIED,
        data={"failures": settings.AXES_FAILURE_LIMIT,
              "cool_off_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)},
    )
    alert_security_reviewers(event)


def connect() -> None:
    user_logged_in.connect(signed_in, dispatch_uid="audit.signed_in")
    user_logged_out.connect(signed_out, dispatch_uid="audit.signed_out")
    user_login_failed.connect(sign_in_failed, dispatch_uid="audit.sign_in_failed")
    user_locked_out.connect(locked_out, dispatch_uid="audit.locked_out")

"""Who may call the JSON API: applications with a bearer token, each operation checking its
scope. Repeated failures from one address are counted, audited and then refused."""

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from accounts.client_ip import client_ip
from api.errors import REALM, Problem
from audit.catalogue import EventKind, Outcome
from audit.db import load_instance, prepared_cursor
from audit.services import Anonymous, record
from breakglass import tokens
from breakglass.models import Application

FAILURE_WINDOW_SECONDS = 60


class TokenAuth(HttpBearer):
    """Bearer tokens from the Authorization header only. Repeated failures from one address
    are refused with 429 before the token is even looked at (QUALITY Q15)."""

    def __call__(self, request: HttpRequest):
        if _failures(request) >= settings.API_TOKEN_FAILURE_LIMIT:
            # The window restarts with the first failure after it ends: a minute at most.
            raise Problem("too-many-requests", "Too many failed authentications from this "
                          "address; wait a minute.",
                          headers={"Retry-After": str(FAILURE_WINDOW_SECONDS)})
        application = super().__call__(request)
        if application is None:
            _count_failure(request)
        return application

    def authenticate(self, request: HttpRequest, token: str):
        prefix = tokens.split_prefix(token)
        application = _application_by_prefix(prefix) if prefix else None
        if application is None or not tokens.matches(token, application.token_hash):
            return None
        if not application.enabled:
            # A real token of a known application: refused (403), not a failed guess.
            raise Problem("forbidden", "This application is disabled.")
        now = timezone.now()
        # A write per call would cost more than the call; a minute's resolution is plenty.
        last = application.last_used_at
        if last is None or (now - last).total_seconds() >= 60:
            Application.objects.filter(pk=application.pk).update(last_used_at=now)
        return application


_APPLICATION_SQL = """
SELECT id, name, scopes, enabled, token_prefix, token_hash, created_at, last_used_at
  FROM breakglass_application WHERE token_prefix = %s
"""


def _application_by_prefix(prefix: str) -> Application | None:
    """Every API call starts here, so it is one prepared statement (see audit/db.py)."""
    with prepared_cursor() as cursor:
        cursor.execute(_APPLICATION_SQL, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    return load_instance(Application, _APPLICATION_FIELDS, row)


_APPLICATION_FIELDS = ["id", "name", "scopes", "enabled", "token_prefix", "token_hash",
                       "created_at", "last_used_at"]


def _failure_key(request) -> str:
    return f"api-auth-failures:{client_ip(request)}"


def _failures(request) -> int:
    return cache.get(_failure_key(request), 0)


def _count_failure(request) -> None:
    key = _failure_key(request)
    cache.add(key, 0, FAILURE_WINDOW_SECONDS)
    count = cache.incr(key)
    header = request.headers.get("Authorization", "")
    prefix = tokens.split_prefix(header.removeprefix("Bearer ").strip()) or ""
    throttled = count == settings.API_TOKEN_FAILURE_LIMIT
    kind = EventKind.API_THROTTLED if throttled else EventKind.API_AUTH_FAILED
    with transaction.atomic():
        record(kind, actor=Anonymous(f"token {prefix}…" if prefix else "no token"),
               outcome=Outcome.DENIED, request=request, data={"path": request.path[:200]})


def require(request, scope: str) -> Application:
    """The calling application, if its token carries `scope`; 403 otherwise, with the scope it
    lacks in the challenge (RFC 6750 §3.1)."""
    application = request.auth
    if not application.has_scope(scope):
        raise Problem("forbidden", f"This token lacks the {scope} scope.", headers={
            "WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'})
    return application

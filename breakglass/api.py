"""The JSON API for applications (SPEC §2.9), a thin adapter over the services.

Every operation needs a bearer token with the right scope; errors are `{"detail": ...}`."""

import logging
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, NinjaAPI, Path, Query, Schema, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.responses import Status
from ninja.security import HttpBearer

from accounts.client_ip import client_ip
from accounts.models import User
from audit.catalogue import EventKind, Outcome
from audit.db import load_instance, prepared_cursor
from audit.models import AuditEvent
from audit.services import Anonymous, record
from breakglass import services, tokens
from breakglass.access import decide_by_name
from breakglass.api_types import Offset, PageSize, RowId, SequenceNumber, Text
from breakglass.models import Application, Grant, Group, Scope, Severity

FAILURE_WINDOW_SECONDS = 60
logger = logging.getLogger(__name__)




class TokenAuth(HttpBearer):
    """Bearer tokens from the Authorization header only. Repeated failures from one address
    are refused with 429 before the token is even looked at (QUALITY Q15)."""

    def __call__(self, request: HttpRequest):
        if _failures(request) >= settings.API_TOKEN_FAILURE_LIMIT:
            raise HttpError(429, "Too many failed authentications from this address; "
                                 "wait a minute.")
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
            raise HttpError(403, "This application is disabled.")
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


api = NinjaAPI(
    title="Breakglass API", version="1", urls_namespace="api", auth=TokenAuth(),
    docs_url="/docs", openapi_url="/openapi.json",
    # Swagger UI from ninja's own static files; no call to the online validator either.
    docs=Swagger(settings={"validatorUrl": None}),
    description="Check access, break glass, revoke grants and export the audit trail.",
)


@api.exception_handler(ValidationError)
def invalid_input(request, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    location = first.get("loc") or ["body"]
    field = str(location[-1])
    message = f"{field}: {first.get('msg', 'invalid')}"
    return api.create_response(request, {"detail": message, "errors": exc.errors}, status=400)


@api.exception_handler(Exception)
def server_error(request, exc: Exception):
    """An unexpected failure is logged with its traceback and answered in JSON like every
    other error; a client never sees Django's HTML error page or the exception's text. What
    Django itself answers with 4xx (a refusal, a body over the upload limit) keeps its status."""
    if isinstance(exc, PermissionDenied):
        return api.create_response(request, {"detail": "Not allowed."}, status=403)
    if isinstance(exc, SuspiciousOperation):  # RequestDataTooBig, a bad host, …
        return api.create_response(request, {"detail": "Bad request."}, status=400)
    logger.exception("API error on %s %s", request.method, request.path[:200])
    return api.create_response(request, {"detail": "Internal server error."}, status=500)


@api.exception_handler(AuthenticationError)
def unauthenticated(request, exc):
    return api.create_response(request, {"detail": "A valid bearer token is required."},
                               status=401)


@api.exception_handler(services.GrantError)
def grant_error(request, exc: services.GrantError):
    return api.create_response(request, {"detail": str(exc)}, status=exc.status)


def require(request, scope: str) -> Application:
    application = request.auth
    if not application.has_scope(scope):
        raise HttpError(403, f"This token lacks the {scope} scope.")
    return application


class GrantOut(Schema):
    id: int
    user: str
    group: str
    status: str
    reason: str
    incident: str
    severity: str
    source: str
    drill: bool = False
    requested_at: datetime
    activated_at: datetime | None
    expires_at: datetime | None
    ended_at: datetime | None
    ended_by: str | None

    @staticmethod
    def from_grant(grant: Grant) -> dict:
        return {
            "id": grant.pk, "user": grant.user.get_username(), "group": grant.group.slug,
            "status": grant.status, "reason": grant.reason, "incident": grant.incident,
            "severity": grant.severity, "source": grant.source, "drill": grant.is_drill,
            "requested_at": grant.requested_at, "activated_at": grant.activated_at,
            "expires_at": grant.expires_at, "ended_at": grant.ended_at,
            "ended_by": grant.ended_by.get_username() if grant.ended_by else None,
        }


class AccessOut(Schema):
    user: str
    group: str
    allowed: bool
    via: str | None
    grant_id: int | None
    expires_at: datetime | None


class AccessQuery(Schema):
    user: Text = Field(max_length=150)
    group: Text = Field(max_length=80)


@api.get("/access", response=AccessOut, summary="May this user use this group now?")
def check_access(request, query: Query[AccessQuery]):
    require(request, Scope.ACCESS_READ)
    user_found, group_found, decision = decide_by_name(query.user, query.group)
    if not user_found:
        raise HttpError(404, f"No user named {query.user!r}.")
    if not group_found:
        raise HttpError(404, f"No group with slug {query.group!r}.")
    return {"user": query.user, "group": query.group, "allowed": decision.allowed,
            "via": decision.via, "grant_id": decision.grant_id,
            "expires_at": decision.expires_at}


class GrantsQuery(Schema):
    status: Grant.Status | None = None
    user: Text | None = Field(None, max_length=150)
    group: Text | None = Field(None, max_length=80)
    limit: PageSize = 100
    offset: Offset = 0


class GrantList(Schema):
    items: list[GrantOut]
    count: int


@api.get("/grants", response=GrantList, summary="List grants")
def list_grants(request, query: Query[GrantsQuery]):
    require(request, Scope.GRANTS_READ)
    grants = Grant.objects.select_related("user", "group", "ended_by").order_by("-pk")
    if query.status:
        grants = grants.filter(status=query.status)
    if query.user:
        grants = grants.filter(user__username=query.user)
    if query.group:
        grants = grants.filter(group__slug=query.group)
    page = grants[query.offset: query.offset + query.limit]
    return {"items": [GrantOut.from_grant(grant) for grant in page], "count": grants.count()}


class RevokeIn(Schema):
    reason: Text = Field("", max_length=services.MAX_REASON_LENGTH)


@api.post("/grants/{grant_id}/revoke", response=GrantOut, summary="End a grant now")
def revoke(request, grant_id: Path[RowId], body: RevokeIn):
    application = require(request, Scope.GRANTS_WRITE)
    grant = get_object_or_404(Grant, pk=grant_id)
    grant = services.revoke_grant(grant, actor=application, reason=body.reason, request=request)
    return GrantOut.from_grant(grant)


class ActivityIn(Schema):
    action: Text = Field(min_length=1, max_length=100)
    detail: Text = Field("", max_length=4000)
    at: datetime | None = None


class ActivityOut(Schema):
    id: int
    grant: int
    action: str
    detail: str
    at: datetime
    reported_at: datetime


@api.post("/grants/{grant_id}/activity", response={201: ActivityOut},
          summary="Report an action taken under a grant")
def report_activity(request, grant_id: Path[RowId], body: ActivityIn):
    application = require(request, Scope.ACTIVITY_WRITE)
    grant = get_object_or_404(Grant, pk=grant_id)
    try:
        activity = services.report_activity(grant, application=application, action=body.action,
                                            detail=body.detail, at=body.at, request=request)
    except services.InvalidInput as invalid:
        raise HttpError(400, f"{invalid.field}: {invalid}") from invalid
    return Status(201, {"id": activity.pk, "grant": grant.pk, "action": activity.action,
                        "detail": activity.detail, "at": activity.happened_at,
                        "reported_at": activity.reported_at})


class BreakGlassIn(Schema):
    user: Text = Field(max_length=150)
    group: Text = Field(max_length=80)
    reason: Text = Field(min_length=1, max_length=services.MAX_REASON_LENGTH)
    incident: Text = Field("", max_length=200)
    severity: Severity | None = None
    drill: bool = Field(False, description="A rehearsal: same path and alerts, labelled, "
                                           "15 minutes, opens a drill review.")


@api.post("/break-glass", response={201: GrantOut}, summary="Break glass for a user")
def break_glass(request, body: BreakGlassIn):
    application = require(request, Scope.BREAK_GLASS_WRITE)
    user, group = _user_and_group(body.user, body.group)
    try:
        grant = services.break_glass(
            group, actor=application, holder=user, reason=body.reason, incident=body.incident,
            severity=body.severity or "", source=Grant.Source.API, request=request,
            drill=body.drill,
        )
    except services.InvalidInput as invalid:
        raise HttpError(400, f"{invalid.field}: {invalid}") from invalid
    return Status(201, GrantOut.from_grant(grant))


_USER_AND_GROUP_SQL = f"""
SELECT u.id, u.username, g.id, g.name, g.slug, g.break_glass_minutes
  FROM (SELECT 1 AS one) o
  LEFT JOIN {User._meta.db_table} u ON u.username = %s AND u.is_active
  LEFT JOIN {Group._meta.db_table} g ON g.slug = %s"""  # noqa: S608 (table names only)


def _user_and_group(username: str, slug: str) -> tuple[User, Group]:
    """Both names in one prepared statement (activation is a hot path); 404 for either."""
    with prepared_cursor() as cursor:
        cursor.execute(_USER_AND_GROUP_SQL, [username, slug])
        user_id, name, group_id, *group_row = cursor.fetchone()
    if user_id is None:
        raise HttpError(404, f"No active user named {username!r}.")
    if group_id is None:
        raise HttpError(404, f"No group with slug {slug!r}.")
    user = load_instance(User, ["id", "username"], [user_id, name])
    group = load_instance(Group, ["id", "name", "slug", "break_glass_minutes"],
                          [group_id, *group_row])
    return user, group


class AuditQuery(Schema):
    after: SequenceNumber = 0
    limit: PageSize = 100


class EventOut(Schema):
    sequence: int
    recorded_at: datetime
    kind: str
    outcome: str
    actor_type: str
    actor: str
    target_type: str
    target_id: str
    target: str
    reason: str
    data: dict
    ip: str
    request_id: str
    mac: str


class AuditPage(Schema):
    items: list[EventOut]
    next: int | None


@api.get("/audit", response=AuditPage, summary="Audit events after a sequence number")
def audit_events(request, query: Query[AuditQuery]):
    require(request, Scope.AUDIT_READ)
    events = list(AuditEvent.objects.filter(sequence__gt=query.after).order_by("sequence")[
        : query.limit])
    items = [{**{field: getattr(event, field) for field in (
        "sequence", "recorded_at", "kind", "outcome", "actor_type", "target_type", "target_id",
        "reason", "data", "ip", "request_id", "mac")},
        "actor": event.actor_label, "target": event.target_label} for event in events]
    next_after = events[-1].sequence if len(events) == query.limit else None
    return {"items": items, "next": next_after}


# On-call schedules and quorum recovery have routers of their own, mounted once `api` exists.
from oncall.api import router as schedules_router  # noqa: E402 (after api exists)
from recovery.api import router as recovery_router  # noqa: E402 (after api exists)
from risk.api import router as incidents_router  # noqa: E402 (after api exists)

api.add_router("/schedules", schedules_router)
api.add_router("/recovery", recovery_router)
api.add_router("/incidents", incidents_router)

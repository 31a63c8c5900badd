"""The breakglass part of the JSON API (SPEC §2.9), mounted at /api/v1/ by api/main.py: a thin
adapter over the services.

Every operation needs a bearer token with the right scope; errors are problem details
(api/errors.py), lists are cursor pages (api/pagination.py), and every POST takes an
Idempotency-Key (api/idempotency.py)."""

from datetime import datetime

from ninja import Field, Path, Query, Router, Schema
from ninja.responses import Status
from pydantic import StrictBool

from accounts.models import User
from api.auth import require
from api.errors import Problem
from api.idempotency import idempotent
from api.pagination import cursor_page
from api.types import Cursor, PageSize, RowId, SequenceNumber, Text
from audit.db import load_instance, prepared_cursor
from audit.models import AuditEvent
from audit.reasons import MAX_REASON_LENGTH
from breakglass.access import decide_by_name
from breakglass.models import Grant, Group, Scope
from breakglass.services import applications, connectors, grants
from breakglass.services import break_glass as glass
from risk.models import Severity

router = Router()


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
    revocation_pending_on: list[str] = Field(
        description="Connectors whose target has not yet confirmed removing this user's "
                    "access (a revocation it refused is retried until it succeeds).")


class AccessQuery(Schema):
    user: Text = Field(max_length=150)
    group: Text = Field(max_length=80)


@router.get("/access", response=AccessOut, summary="May this user use this group now?")
def check_access(request, query: Query[AccessQuery]):
    require(request, Scope.ACCESS_READ)
    user_found, group_found, decision = decide_by_name(query.user, query.group)
    if not user_found:
        raise Problem("not-found", f"No user named {query.user!r}.")
    if not group_found:
        raise Problem("not-found", f"No group with slug {query.group!r}.")
    # Only ended access can have a revocation pending: the allowed answer stays one query.
    pending = [] if decision.allowed else connectors.pending_on(query.user, query.group)
    return {"user": query.user, "group": query.group, "allowed": decision.allowed,
            "via": decision.via, "grant_id": decision.grant_id,
            "expires_at": decision.expires_at, "revocation_pending_on": pending}


class GrantsQuery(Schema):
    status: Grant.Status | None = None
    user: Text | None = Field(None, max_length=150)
    group: Text | None = Field(None, max_length=80)
    after: Cursor | None = None
    limit: PageSize = 100


class GrantList(Schema):
    items: list[GrantOut]
    next: int | None = Field(description="Pass as `after` for the next page; null on the last.")


@router.get("/grants", response=GrantList, summary="List grants, newest first")
def list_grants(request, query: Query[GrantsQuery]):
    require(request, Scope.GRANTS_READ)
    grants = Grant.objects.select_related("user", "group", "ended_by")
    if query.status:
        grants = grants.filter(status=query.status)
    if query.user:
        grants = grants.filter(user__username=query.user)
    if query.group:
        grants = grants.filter(group__slug=query.group)
    page, next_after = cursor_page(grants, after=query.after, limit=query.limit,
                                   newest_first=True)
    return {"items": [GrantOut.from_grant(grant) for grant in page], "next": next_after}


def _grant(grant_id: int) -> Grant:
    grant = Grant.objects.select_related("user", "group").filter(pk=grant_id).first()
    if grant is None:
        raise Problem("not-found", f"No grant with id {grant_id}.")
    return grant


class RevokeIn(Schema):
    reason: Text = Field("", max_length=MAX_REASON_LENGTH)


@router.post("/grants/{grant_id}/revoke", response=GrantOut, summary="End a grant now")
@idempotent
def revoke(request, grant_id: Path[RowId], body: RevokeIn):
    application = require(request, Scope.GRANTS_WRITE)
    grant = _grant(grant_id)
    grant = grants.revoke_grant(grant, actor=application, reason=body.reason, request=request)
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


@router.post("/grants/{grant_id}/activity", response={201: ActivityOut},
          summary="Report an action taken under a grant")
@idempotent
def report_activity(request, grant_id: Path[RowId], body: ActivityIn):
    application = require(request, Scope.ACTIVITY_WRITE)
    grant = _grant(grant_id)
    activity = applications.report_activity(grant, actor=application, action=body.action,
                                            detail=body.detail, at=body.at, request=request)
    return Status(201, {"id": activity.pk, "grant": grant.pk, "action": activity.action,
                        "detail": activity.detail, "at": activity.happened_at,
                        "reported_at": activity.reported_at})


class BreakGlassIn(Schema):
    user: Text = Field(max_length=150)
    group: Text = Field(max_length=80)
    reason: Text = Field(min_length=1, max_length=MAX_REASON_LENGTH)
    incident: Text = Field("", max_length=200)
    severity: Severity | None = None
    drill: StrictBool = Field(False, description="A rehearsal: same path and alerts, labelled, "
                                           "15 minutes, opens a drill review.")


@router.post("/break-glass", response={201: GrantOut}, summary="Break glass for a user")
@idempotent
def break_glass(request, body: BreakGlassIn):
    application = require(request, Scope.BREAK_GLASS_WRITE)
    user, group = _user_and_group(body.user, body.group)
    grant = glass.break_glass(
        group, actor=application, holder=user, reason=body.reason, incident=body.incident,
        severity=body.severity or "", source=Grant.Source.API, request=request,
        drill=body.drill,
    )
    return Status(201, GrantOut.from_grant(grant))


_USER_AND_GROUP_SQL = f"""
SELECT u.id, u.username, g.id, g.name, g.slug, g.break_glass_minutes, g.sensitivity
  FROM (SELECT 1 AS one) o
  LEFT JOIN {User._meta.db_table} u ON u.username = %s AND u.is_active
  LEFT JOIN {Group._meta.db_table} g ON g.slug = %s"""  # noqa: S608 (table names only)


def _user_and_group(username: str, slug: str) -> tuple[User, Group]:
    """Both names in one prepared statement (activation is a hot path); 404 for either."""
    with prepared_cursor() as cursor:
        cursor.execute(_USER_AND_GROUP_SQL, [username, slug])
        user_id, name, group_id, *group_row = cursor.fetchone()
    if user_id is None:
        raise Problem("not-found", f"No active user named {username!r}.")
    if group_id is None:
        raise Problem("not-found", f"No group with slug {slug!r}.")
    user = load_instance(User, ["id", "username"], [user_id, name])
    # Everything break glass reads before it locks the group, or a deferred field would cost
    # a query of its own.
    group = load_instance(Group, ["id", "name", "slug", "break_glass_minutes", "sensitivity"],
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


@router.get("/audit", response=AuditPage, summary="Audit events after a sequence number")
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

"""Access requests, groups and owners in the JSON API, mounted under /api/v1/requests and
/api/v1/groups by api/main.py: a thin adapter over breakglass/services/requests.py, the same
services as the pages, so the same refusals (nobody approves their own request, only owners
decide, one approval per owner) and the same audit events and alerts.

An application acts *for* the people it names: `user` makes a request, `as_user` approves,
denies or withdraws it. The services then check that person's rights exactly as on the pages;
each audit event names the person, and its `data.via` the application. `requests:write` is
therefore for a system that has already authenticated the people it names (a chat bot that
verified its user), never for one that merely relays text."""

from datetime import datetime
from enum import StrEnum

from django.db.models import Prefetch, Q
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema
from ninja.responses import Status

from accounts.models import User
from api.auth import require
from api.errors import Problem, field_error
from api.idempotency import idempotent
from api.pagination import cursor_page
from api.types import Cursor, PageSize, RowId, Text
from audit.reasons import MAX_REASON_LENGTH
from breakglass.models import AccessRequest, Approval, Group, Scope
from breakglass.services import requests as services
from risk.models import MAX_REQUEST_MINUTES, MIN_REQUEST_MINUTES, Severity

requests_router = Router(tags=["requests"])
groups_router = Router(tags=["groups"])


class ApprovalOut(Schema):
    user: str
    comment: str
    at: datetime


class RequestOut(Schema):
    id: int
    kind: str = Field(description="access, or extension of an active grant")
    status: str = Field(description="pending, approved, denied, lapsed or withdrawn; a "
                                    "pending request past its expiry is already lapsed")
    user: str
    group: str
    minutes: int
    reason: str
    incident: str
    approvals_needed: int
    approvals: list[ApprovalOut]
    auto_approved_by: str = Field(description="The auto-approve rule that approved it, if one did.")
    grant_id: int
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str


def request_out(access_request: AccessRequest) -> dict:
    decided_by = access_request.decided_by
    return {
        "id": access_request.pk, "kind": access_request.kind,
        "status": access_request.effective_status(),
        "user": access_request.requester.get_username(), "group": access_request.group.slug,
        "minutes": access_request.minutes, "reason": access_request.reason,
        "incident": access_request.incident,
        "approvals_needed": access_request.approvals_required,
        "approvals": [{"user": approval.approver.get_username(), "comment": approval.comment,
                       "at": approval.created_at} for approval in access_request.approvals.all()],
        "auto_approved_by": access_request.auto_rule, "grant_id": access_request.grant_id,
        "created_at": access_request.created_at, "expires_at": access_request.expires_at,
        "decided_at": access_request.decided_at,
        "decided_by": decided_by.get_username() if decided_by else None,
        "comment": access_request.comment,
    }


def _requests():
    approvals = Prefetch("approvals", queryset=Approval.objects.select_related("approver"))
    return (AccessRequest.objects.select_related("requester", "group", "decided_by")
            .prefetch_related(approvals))


def _active_user(username: str, field: str) -> User:
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise Problem("not-found", f"No active user named {username!r}.",
                      errors=[field_error(field, "no such active user")])
    return user


def _group(slug: str) -> Group:
    group = Group.objects.filter(slug=slug).first()
    if group is None:
        raise Problem("not-found", f"No group with slug {slug!r}.")
    return group


def _access_request(request_id: int) -> AccessRequest:
    access_request = _requests().filter(pk=request_id).first()
    if access_request is None:
        raise Problem("not-found", f"No access request with id {request_id}.")
    return access_request


def _acting_for(request: HttpRequest, scope: str):
    """The application, after its scope check; every event the services record for this
    call names it in `data.via`."""
    application = require(request, scope)
    request.audit_via = f"api application {application.name}"
    return application


class RequestIn(Schema):
    user: Text = Field(max_length=150, description="Who asks for access.")
    group: Text = Field(max_length=80)
    minutes: int = Field(ge=MIN_REQUEST_MINUTES, le=MAX_REQUEST_MINUTES,
                             description="Asked for, counted from approval; at most the "
                                         "group's maximum and the risk rule's.")
    reason: Text = Field("", max_length=MAX_REASON_LENGTH,
                         description="Required where the group asks for one.")
    incident: Text = Field("", max_length=200, description="An open incident's external id.")
    severity: Severity | None = None


@requests_router.post("", response={201: RequestOut}, url_name="requests",
                      summary="Ask for access to a group for a user (owners approve)")
@idempotent
def create_request(request: HttpRequest, body: RequestIn):
    _acting_for(request, Scope.REQUESTS_WRITE)
    requester = _active_user(body.user, "user")
    access_request = services.request_access(
        _group(body.group), actor=requester, minutes=body.minutes, reason=body.reason,
        incident=body.incident, severity=body.severity or "", request=request)
    return Status(201, request_out(_access_request(access_request.pk)))


# Its own name in the document: `Status` there is the grants' (breakglass/api.py).
RequestStatus = StrEnum("RequestStatus", {value.upper(): value
                                          for value in AccessRequest.Status.values})


class RequestsQuery(Schema):
    status: RequestStatus | None = None
    user: Text | None = Field(None, max_length=150, description="The requester.")
    group: Text | None = Field(None, max_length=80)
    awaiting: Text | None = Field(None, max_length=150, description=(
        "Only the pending requests this owner may still approve."))
    after: Cursor | None = None
    limit: PageSize = 100


class RequestPage(Schema):
    items: list[RequestOut]
    next: int | None = Field(description="Pass as `after` for the next page; null on the last.")


@requests_router.get("", response=RequestPage, url_name="requests",
                     summary="List access requests, newest first")
def list_requests(request: HttpRequest, query: Query[RequestsQuery]):
    require(request, Scope.REQUESTS_READ)
    rows = _requests()
    if query.awaiting:
        owner = User.objects.filter(username=query.awaiting, is_active=True).first()
        rows = rows.filter(pk__in=services.waiting_for(owner).values("pk")) if owner else (
            rows.none())
    if query.status:
        rows = rows.filter(_effective_status_is(query.status))
    if query.user:
        rows = rows.filter(requester__username=query.user)
    if query.group:
        rows = rows.filter(group__slug=query.group)
    page, next_after = cursor_page(rows, after=query.after, limit=query.limit, newest_first=True)
    return {"items": [request_out(row) for row in page], "next": next_after}


def _effective_status_is(status: str) -> Q:
    """A pending request past its expiry has lapsed, whether or not the sweep has run."""
    now = timezone.now()
    pending = Q(status=AccessRequest.Status.PENDING)
    if status == AccessRequest.Status.PENDING:
        return pending & Q(expires_at__gt=now)
    if status == AccessRequest.Status.LAPSED:
        return Q(status=status) | (pending & Q(expires_at__lte=now))
    return Q(status=status)


@requests_router.get("/{request_id}", response=RequestOut, url_name="request",
                     summary="One access request, with its approvals")
def get_request(request: HttpRequest, request_id: Path[RowId]):
    require(request, Scope.REQUESTS_READ)
    return request_out(_access_request(request_id))


class DecisionIn(Schema):
    as_user: Text = Field(max_length=150, description=(
        "The owner deciding: the service checks that they may (an owner of the group, not "
        "the requester, once per request)."))
    comment: Text = Field("", max_length=MAX_REASON_LENGTH)


class DenyIn(DecisionIn):
    comment: Text = Field(min_length=1, max_length=MAX_REASON_LENGTH,
                          description="Why: the requester is told.")


class WithdrawIn(Schema):
    as_user: Text = Field(max_length=150, description="The requester.")
    reason: Text = Field("", max_length=MAX_REASON_LENGTH)


@requests_router.post("/{request_id}/approve", response=RequestOut, url_name="approve_request",
                      summary="One owner's approval; the last one needed gives the access")
@idempotent
def approve(request: HttpRequest, request_id: Path[RowId], body: DecisionIn):
    _acting_for(request, Scope.REQUESTS_WRITE)
    owner = _active_user(body.as_user, "as_user")
    services.approve_request(_access_request(request_id), actor=owner, comment=body.comment,
                             request=request)
    return request_out(_access_request(request_id))


@requests_router.post("/{request_id}/deny", response=RequestOut, url_name="deny_request",
                      summary="An owner says no, with a comment the requester is told")
@idempotent
def deny(request: HttpRequest, request_id: Path[RowId], body: DenyIn):
    _acting_for(request, Scope.REQUESTS_WRITE)
    owner = _active_user(body.as_user, "as_user")
    services.deny_request(_access_request(request_id), actor=owner, comment=body.comment,
                          request=request)
    return request_out(_access_request(request_id))


@requests_router.post("/{request_id}/withdraw", response=RequestOut,
                      url_name="withdraw_request", summary="The requester takes a request back")
@idempotent
def withdraw(request: HttpRequest, request_id: Path[RowId], body: WithdrawIn):
    _acting_for(request, Scope.REQUESTS_WRITE)
    requester = _active_user(body.as_user, "as_user")
    services.withdraw_request(_access_request(request_id), actor=requester,
                              reason=body.reason, request=request)
    return request_out(_access_request(request_id))


class GroupOut(Schema):
    slug: str
    name: str
    description: str
    sensitivity: str
    owners: list[str] = Field(description="Texts of its active owners, who approve.")
    break_glass_minutes: int = Field(description="How long breaking glass gives access.")
    requestable: bool = Field(description="Whether it takes access requests.")
    request_max_minutes: int
    request_reason_required: bool
    request_incident_required: bool
    approvals_needed: int
    auto_approve_group: str | None
    request_expiry_minutes: int


def group_out(group: Group) -> dict:
    return {
        "slug": group.slug, "name": group.name, "description": group.description,
        "sensitivity": group.sensitivity,
        "owners": sorted(owner.get_username() for owner in group.owners.all()),
        "break_glass_minutes": int(group.break_glass_duration.total_seconds() // 60),
        "requestable": group.requestable, "request_max_minutes": group.request_max_minutes,
        "request_reason_required": group.request_reason_required,
        "request_incident_required": group.request_incident_required,
        "approvals_needed": group.approvals_needed,
        "auto_approve_group": group.auto_approve_group.slug if group.auto_approve_group else None,
        "request_expiry_minutes": group.request_expiry_minutes,
    }


def _groups():
    return Group.objects.select_related("auto_approve_group").prefetch_related(
        Prefetch("owners", queryset=User.objects.filter(is_active=True)))


class GroupsQuery(Schema):
    after: Cursor | None = None
    limit: PageSize = 100


class GroupPage(Schema):
    items: list[GroupOut]
    next: int | None = Field(description="Pass as `after` for the next page; null on the last.")


@groups_router.get("", response=GroupPage, url_name="groups",
                   summary="List groups with their owners, oldest first")
def list_groups(request: HttpRequest, query: Query[GroupsQuery]):
    require(request, Scope.GROUPS_READ)
    page, next_after = cursor_page(_groups(), after=query.after, limit=query.limit)
    return {"items": [group_out(group) for group in page], "next": next_after}


@groups_router.get("/{slug}", response=GroupOut, url_name="group",
                   summary="One group with its owners and request settings")
def get_group(request: HttpRequest, slug: Path[Text]):
    require(request, Scope.GROUPS_READ)
    group = _groups().filter(slug=slug).first()
    if group is None:
        raise Problem("not-found", f"No group with slug {slug!r}.")
    return group_out(group)

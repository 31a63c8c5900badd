"""Access requests (SPEC §2.3): ask for time-bound access to a group, or for more time on an
active grant; distinct owners approve (never their own request), or the group's auto-approve
rule approves at once; deny, withdraw, and lapse when nobody decided in time.

Each change locks its request row, checks, writes, records its audit event and alerts in one
transaction; what it does to the grant goes through the grant transitions of `grants`. A
refusal that must also leave a trace (a request found lapsed while someone tried to approve
it) commits the trace first and raises after."""

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.alerts import alert
from audit.catalogue import EventKind, Outcome
from audit.reasons import check_reason
from audit.services import record
from breakglass import sql
from breakglass.access import decide
from breakglass.models import AccessRequest, Approval, Grant, Group
from breakglass.services import connectors, grants, groups
from breakglass.services.errors import GrantError, InvalidInput, NotAllowed, RequestRefused
from risk.durations import minutes_words
from risk.models import MIN_REQUEST_MINUTES
from risk.rules import Path, RiskRefused, decide_risk, decide_severity

MAX_INCIDENT_LENGTH = 200
VIA_WORDS = {"member": "a member of", "grant": "holds access to",
             "nested": "has access through nesting to", "on_call": "on call now in",
             "directory": "through the directory a member of"}


def request_link(access_request: AccessRequest) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("breakglass:request-detail",
                                                   args=[access_request.pk])


def _checked(group: Group, *, minutes, reason: str, incident: str,
             incident_asked: bool = True) -> tuple[str, str]:
    if not isinstance(minutes, int) or not (
            MIN_REQUEST_MINUTES <= minutes <= group.request_max_minutes):
        raise InvalidInput("minutes", "Choose a duration from 15 minutes to "
                                      f"{minutes_words(group.request_max_minutes)}.")
    reason = check_reason(reason, invalid=InvalidInput, required=group.request_reason_required,
                          missing="Give a reason: the owners decide on it.")
    incident = (incident or "").strip()
    if incident_asked and group.request_incident_required and not incident:
        raise InvalidInput("incident", "This group needs an incident reference.")
    if len(incident) > MAX_INCIDENT_LENGTH:
        raise InvalidInput("incident", f"Keep it under {MAX_INCIDENT_LENGTH} characters.")
    return reason, incident


def _request_data(access_request: AccessRequest) -> dict:
    return {"group": access_request.group.slug, "requester": access_request.requester.username,
            "kind": access_request.kind, "minutes": access_request.minutes,
            "grant": access_request.grant_id, "incident": access_request.incident,
            "expires_at": access_request.expires_at.isoformat(),
            "approvals_needed": access_request.approvals_required,
            **({"risk": access_request.risk} if access_request.risk else {})}


def auto_approval_rule(group: Group, requester: User) -> str:
    """Why `requester` is approved at once for `group`, or "" when they are not."""
    auto = group.auto_approve_group
    if auto is None:
        return ""
    decision = decide(requester, auto)
    if not decision.allowed:
        return ""
    return f"{requester.username} is {VIA_WORDS[decision.via]} {auto.name} ({auto.slug})"


def request_access(group: Group, *, actor: User, minutes: int, reason: str = "",
                   incident: str = "", severity: str = "", request: HttpRequest | None = None,
                   stepped_up_at=None) -> AccessRequest:
    """The actor asks for `minutes` of access to `group`, counted from approval. The grant
    waits in `requested`; owners are alerted, or the auto-approve rule activates it at once.

    `incident` is an open incident's external id; its severity (or `severity` without one, at
    most SEV3 on high and critical groups) and the group's sensitivity pick the risk rule: it
    caps the duration, may raise the approvals needed (above one, the auto-approve rule no
    longer applies) and may want a step-up code verified in the last 5 minutes
    (`stepped_up_at`)."""
    if not group.requestable:
        raise RequestRefused(f"{group.name} does not take access requests.")
    reason, _ = _checked(group, minutes=minutes, reason=reason, incident=incident)
    if missing := connectors.missing_logins(group, actor):
        why = connectors.missing_login_message(missing, actor)
        with transaction.atomic():
            record(EventKind.GRANT_REFUSED, actor=actor, target=group, request=request,
                   outcome=Outcome.DENIED, reason=why)
        raise RequestRefused(why)
    linked = grants.find_incident(incident)
    decided, claimed = decide_severity(group.sensitivity, incident=linked, severity=severity)
    decision = decide_risk(Path.REQUEST, sensitivity=group.sensitivity, severity=decided,
                           claimed=claimed, stepped_up_at=stepped_up_at)
    if not decision.allowed:
        with transaction.atomic():
            record(EventKind.GRANT_REFUSED, actor=actor, target=group, request=request,
                   outcome=Outcome.DENIED, reason=decision.why,
                   data={"risk": decision.as_data()})
        raise RiskRefused(decision)
    if minutes > decision.max_minutes:
        raise InvalidInput("minutes", f"Risk rule {decision.cell} allows at most "
                                      f"{minutes_words(decision.max_minutes)}.")
    with transaction.atomic():
        now = timezone.now()
        grant = Grant(user=actor, group=group, status=Grant.Status.REQUESTED,
                      source=Grant.Source.REQUEST, reason=reason,
                      incident=linked.external_id if linked else "", incident_record=linked,
                      severity=decision.severity if (linked or severity) else "",
                      claimed_severity=claimed, requested_at=now, risk=decision.as_data())
        if not sql.insert_open_grant(grant):
            _explain_open_grant(group, actor, now)
            sql.insert_open_grant(grant)  # the open grant was past its instant: it has ended
        access_request = AccessRequest.objects.create(
            kind=AccessRequest.Kind.ACCESS, requester=actor, group=group, grant=grant,
            minutes=minutes, reason=reason, incident=grant.incident, created_at=now,
            approvals_needed=max(group.approvals_needed, decision.approvals),
            risk=decision.as_data(),
            expires_at=now + timedelta(minutes=group.request_expiry_minutes),
        )
        _opened(access_request, request=request, now=now)
    return access_request


def _explain_open_grant(group: Group, requester: User, now) -> None:
    current = Grant.objects.open().select_for_update().filter(user=requester,
                                                              group=group).first()
    if current is None:
        return  # ended since the insert looked
    if current.status == Grant.Status.REQUESTED:
        raise GrantError("You already have a pending request for this group.")
    if current.gives_access(now):
        raise GrantError(f"You already have access to {group.name} until "
                         f"{current.expires_at:%Y-%m-%d %H:%M} UTC; request an extension.")
    grants.expire_grant(current)


def request_extension(grant: Grant, *, actor: User, minutes: int, reason: str = "",
                      request: HttpRequest | None = None) -> AccessRequest:
    """The holder asks for access until `minutes` from the approval (never less than they
    have). The request lapses when the grant ends, if not before."""
    group = grant.group
    if grant.user_id != actor.pk:
        raise RequestRefused("Only the holder asks for more time on a grant.")
    if not group.requestable:
        raise RequestRefused(f"{group.name} does not take requests, extensions included.")
    # An extension keeps the grant's incident.
    reason, _ = _checked(group, minutes=minutes, reason=reason, incident="",
                         incident_asked=False)
    # The risk rule that capped the grant caps each extension too.
    decision = decide_risk(Path.REQUEST, sensitivity=group.sensitivity,
                           severity=grant.severity, stepped_up_at=timezone.now())
    if decision.allowed and minutes > decision.max_minutes:
        raise InvalidInput("minutes", f"Risk rule {decision.cell} allows at most "
                                      f"{minutes_words(decision.max_minutes)}.")
    with transaction.atomic():
        now = timezone.now()
        grant = Grant.objects.select_for_update().get(pk=grant.pk)
        if not grant.gives_access(now):
            raise GrantError("This grant has ended; request access anew.")
        if now + timedelta(minutes=minutes) <= grant.expires_at:
            raise InvalidInput("minutes", "Your access already runs until "
                                          f"{grant.expires_at:%Y-%m-%d %H:%M} UTC: ask for "
                                          "longer than the time left.")
        try:
            with transaction.atomic():
                access_request = AccessRequest.objects.create(
                    kind=AccessRequest.Kind.EXTENSION, requester=actor, group=group,
                    grant=grant, minutes=minutes, reason=reason, incident=grant.incident,
                    created_at=now, expires_at=min(
                        now + timedelta(minutes=group.request_expiry_minutes), grant.expires_at),
                )
        except IntegrityError as clash:
            raise GrantError("An extension of this grant is already pending.") from clash
        _opened(access_request, request=request, now=now)
    return access_request


def _opened(access_request: AccessRequest, *, request, now) -> None:
    event = record(EventKind.REQUEST_CREATED, actor=access_request.requester,
                   target=access_request, reason=access_request.reason,
                   data=_request_data(access_request), request=request)
    # The auto-approve rule stands for one approval: a risk rule wanting more sets it aside.
    rule = (auto_approval_rule(access_request.group, access_request.requester)
            if access_request.approvals_required <= 1 else "")
    if rule:
        access_request.auto_rule = rule[:200]
        _give(access_request, actor=None, kind=EventKind.REQUEST_AUTO_APPROVED, now=now,
              request=request)
    _alert_owners(event, access_request)


def _alert_owners(event, access_request: AccessRequest) -> None:
    owners = access_request.group.owners.filter(is_active=True).exclude(
        pk=access_request.requester_id)
    alert(event, users=owners, template="request_created",
          context={"access_request": access_request, "request_link": request_link(
              access_request)})


def _tell_requester(event, access_request: AccessRequest, outcome: str, until=None) -> None:
    alert(event, users=[access_request.requester], template="request_decided",
          context={"access_request": access_request, "outcome": outcome, "until": until,
                   "request_link": request_link(access_request)})


def _give(access_request: AccessRequest, *, actor, kind: str, now, request=None) -> Grant:
    """Give what was asked: the requested grant starts now for its duration, or the active
    grant runs until now + the requested time (never shorter than it already does). The
    request's decision is recorded and the requester told; the grant's own transition tells
    the connectors (and, for an extension, the owners)."""
    access_request.status = AccessRequest.Status.APPROVED
    access_request.decided_at = now
    access_request.decided_by = actor
    access_request.save(update_fields=["status", "decided_at", "decided_by", "auto_rule"])
    data = {"request": access_request.pk, "approvers": sorted(
        access_request.approvals.values_list("approver__username", flat=True))}
    if access_request.auto_rule:
        data["rule"] = access_request.auto_rule
    # The decision first, then what it gives: the trail reads cause before effect.
    event = record(kind, actor=actor, target=access_request, reason=access_request.reason,
                   data={**_request_data(access_request), **data}, request=request)
    if access_request.kind == AccessRequest.Kind.ACCESS:
        grant = grants.activate_grant(access_request.grant, actor=actor, request=request,
                                      duration=access_request.duration, data=data)
    else:
        grant = grants.extend_grant(access_request.grant, actor=actor, request=request,
                                    until=now + access_request.duration,
                                    reason=access_request.reason, data=data)
    _tell_requester(event, access_request, "approved", until=grant.expires_at)
    return grant


def _locked(access_request: AccessRequest) -> AccessRequest:
    return (AccessRequest.objects.select_for_update(of=("self",))
            .select_related("group", "requester").get(pk=access_request.pk))


def _closed_reason(access_request: AccessRequest, now) -> GrantError | None:
    """Why a request cannot be decided any more, lapsing it first if its time is up (or its
    grant ended, for an extension)."""
    status = access_request.effective_status(now)
    if status == AccessRequest.Status.PENDING and (
            access_request.kind == AccessRequest.Kind.EXTENSION
            and not Grant.objects.get(pk=access_request.grant_id).gives_access(now)):
        status = AccessRequest.Status.LAPSED
    if status == AccessRequest.Status.PENDING:
        return None
    if access_request.status == AccessRequest.Status.PENDING:
        _lapse(access_request, now)
    return GrantError(f"This request is {status}; it can no longer be decided.")


def _check_decider(access_request: AccessRequest, owner: User, verb: str) -> None:
    if owner.pk == access_request.requester_id:
        raise RequestRefused(f"You cannot {verb} your own request"
                             f"{': withdraw it instead' if verb == 'deny' else ''}.")
    if not access_request.group.owners.filter(pk=owner.pk, is_active=True).exists():
        raise RequestRefused(f"Only the owners of {access_request.group.name} {verb} requests.")


def approve_request(access_request: AccessRequest, *, actor: User, comment: str = "",
                    request: HttpRequest | None = None) -> AccessRequest:
    """One owner's approval; the last one needed gives the access. Two owners approving at
    once give one activation: the request row is locked."""
    comment = check_reason(comment, invalid=InvalidInput, field="comment", required=False)
    with transaction.atomic():
        access_request = _locked(access_request)
        now = timezone.now()
        refusal = _closed_reason(access_request, now)
        if refusal is None:
            _check_decider(access_request, actor, "approve")
            if access_request.approvals.filter(approver=actor).exists():
                raise GrantError("You have already approved this request.")
            Approval.objects.create(request=access_request, approver=actor,
                                    comment=comment, created_at=now)
            count = access_request.approvals.count()
            needed = access_request.approvals_required
            if count >= needed:
                _give(access_request, actor=actor, kind=EventKind.REQUEST_APPROVED, now=now,
                      request=request)
            else:
                record(EventKind.REQUEST_APPROVAL, actor=actor, target=access_request,
                       reason=comment, data={"approvals": count, "needed": needed},
                       request=request)
    if refusal is not None:
        raise refusal
    return access_request


def deny_request(access_request: AccessRequest, *, actor: User, comment: str,
                 request: HttpRequest | None = None) -> AccessRequest:
    """An owner says no, with a comment the requester is told."""
    comment = check_reason(comment, invalid=InvalidInput, field="comment",
                           missing="Say why: the requester is told.")
    with transaction.atomic():
        access_request = _locked(access_request)
        now = timezone.now()
        refusal = _closed_reason(access_request, now)
        if refusal is None:
            _check_decider(access_request, actor, "deny")
            _close(access_request, AccessRequest.Status.DENIED, by=actor, comment=comment,
                   now=now, request=request)
            event = record(EventKind.REQUEST_DENIED, actor=actor, target=access_request,
                           reason=comment, data=_request_data(access_request), request=request)
            _tell_requester(event, access_request, "denied")
    if refusal is not None:
        raise refusal
    return access_request


def withdraw_request(access_request: AccessRequest, *, actor: User, reason: str = "",
                     request: HttpRequest | None = None) -> AccessRequest:
    """The requester takes back a pending request."""
    reason = check_reason(reason, invalid=InvalidInput, required=False)
    with transaction.atomic():
        access_request = _locked(access_request)
        if actor.pk != access_request.requester_id:
            raise RequestRefused("Only the requester withdraws a request.")
        if access_request.effective_status() != AccessRequest.Status.PENDING:
            raise GrantError(f"This request is {access_request.effective_status()}.")
        _close(access_request, AccessRequest.Status.WITHDRAWN, by=actor,
               comment=reason or "withdrawn by the requester", now=timezone.now(),
               request=request)
        record(EventKind.REQUEST_WITHDRAWN, actor=actor, target=access_request,
               reason=access_request.comment, data=_request_data(access_request),
               request=request)
    return access_request


def withdraw_requests_of(user: User, *, actor, reason: str, cause: dict,
                         request: HttpRequest | None = None) -> int:
    """Close every pending request of someone who left (deprovisioning): withdrawn, its
    waiting grant denied, so no owner approves access for an account that is gone. In the
    caller's transaction; returns how many were closed."""
    closed = 0
    pending = AccessRequest.objects.filter(requester=user, status=AccessRequest.Status.PENDING)
    for access_request in pending.order_by("pk"):
        access_request = _locked(access_request)
        if access_request.status != AccessRequest.Status.PENDING:
            continue  # decided meanwhile
        _close(access_request, AccessRequest.Status.WITHDRAWN, by=None, comment=reason,
               now=timezone.now(), cause=cause, request=request)
        record(EventKind.REQUEST_WITHDRAWN, actor=actor, target=access_request, reason=reason,
               data={**_request_data(access_request), "cause": cause}, request=request)
        closed += 1
    return closed


def _close(access_request: AccessRequest, status: str, *, by: User | None, comment: str,
           now, cause: dict | None = None, request: HttpRequest | None = None) -> None:
    """End a request without giving access: a requested grant ends with it (denied, or lapsed
    when the request lapsed); an extension's grant is left as it is, and so is a grant that
    is no longer waiting (the request row must close whatever became of it)."""
    access_request.status = status
    access_request.decided_at = now
    access_request.decided_by = by
    access_request.comment = comment
    access_request.save(update_fields=["status", "decided_at", "decided_by", "comment"])
    grant = access_request.grant
    if access_request.kind != AccessRequest.Kind.ACCESS or grant.status != Grant.Status.REQUESTED:
        return
    cause = {"request": access_request.pk, "request_status": status, **(cause or {})}
    if status == AccessRequest.Status.LAPSED:
        grants.lapse_requested_grant(grant, reason=comment, cause=cause)
    else:
        grants.deny_requested_grant(grant, actor=by, reason=comment, cause=cause,
                                    request=request)


def _lapse(access_request: AccessRequest, now) -> None:
    _close(access_request, AccessRequest.Status.LAPSED, by=None, now=now,
           comment="nobody decided in time")
    event = record(EventKind.REQUEST_LAPSED, actor=None, target=access_request,
                   data=_request_data(access_request))
    _tell_requester(event, access_request, "lapsed (nobody decided in time)")


def lapse_requests_for_incident(incident, *, now) -> int:
    """A resolved incident's pending requests lapse: nothing would end the access they ask for
    early, so they are not approved after the incident they were made under."""
    closed = 0
    pending = (AccessRequest.objects.select_for_update(of=("self",))
               .select_related("group", "requester")
               .filter(grant__incident_record=incident, status=AccessRequest.Status.PENDING,
                       group__end_grants_on_resolve=True))
    for access_request in pending:
        cause = {"incident": incident.external_id}
        _close(access_request, AccessRequest.Status.LAPSED, by=None, now=now, cause=cause,
               comment=f"incident {incident.external_id} was resolved")
        event = record(EventKind.REQUEST_LAPSED, actor=None, target=access_request,
                       data={**_request_data(access_request), "cause": cause})
        _tell_requester(event, access_request,
                        f"lapsed (incident {incident.external_id} was resolved)")
        closed += 1
    return closed


def supersede_request(grant: Grant, *, actor: User, request=None) -> None:
    """Breaking glass while a request for the same group waits: the request is withdrawn (or
    lapses, if its time is already up), so the emergency path is never blocked by it."""
    pending = grant.requests.filter(kind=AccessRequest.Kind.ACCESS,
                                    status=AccessRequest.Status.PENDING).first()
    if pending is None:
        return
    now = timezone.now()
    if pending.effective_status(now) == AccessRequest.Status.LAPSED:
        _lapse(pending, now)
        return
    _close(pending, AccessRequest.Status.WITHDRAWN, by=actor, now=now,
           comment="superseded by breaking glass", request=request)
    record(EventKind.REQUEST_WITHDRAWN, actor=actor, target=pending, reason=pending.comment,
           data=_request_data(pending), request=request)


def lapse_due_requests() -> int:
    """The minute sweep: every pending request past its expiry lapses, once."""
    now = timezone.now()
    due = AccessRequest.objects.filter(status=AccessRequest.Status.PENDING,
                                       expires_at__lte=now).values_list("pk", flat=True)
    lapsed = 0
    for pk in list(due):
        with transaction.atomic():
            access_request = AccessRequest.objects.select_for_update().filter(
                pk=pk, status=AccessRequest.Status.PENDING).first()
            if access_request is not None:
                _lapse(access_request, timezone.now())
                lapsed += 1
    return lapsed


def visible_requests(actor: User):
    """Requests an actor may look at: their own, their groups' (as owner), all for reviewers
    and administrators."""
    if actor.is_superuser or actor.is_security_reviewer:
        return AccessRequest.objects.all()
    return AccessRequest.objects.filter(
        Q(requester=actor) | Q(group__owners=actor)).distinct()


def waiting_for(owner: User):
    """Pending requests the owner may still approve: their groups', not their own, not yet
    approved by them, not past their expiry."""
    return (AccessRequest.objects.filter(status=AccessRequest.Status.PENDING,
                                         expires_at__gt=timezone.now(), group__owners=owner)
            .exclude(requester=owner).exclude(approvals__approver=owner)
            .select_related("group", "requester").distinct())


def set_request_settings(group: Group, values: dict, *, actor: User,
                         request: HttpRequest | None = None) -> list[str]:
    """An owner changes the group's request settings (the form has validated them). One
    history row and one audit event naming what changed; nothing when nothing did."""

    def plain(value):
        return value.slug if isinstance(value, Group) else value

    with transaction.atomic():
        group = Group.objects.select_for_update().get(pk=group.pk)
        if not groups.may_manage(actor, group):
            raise NotAllowed("Only the group's owners change its request settings.")
        changed = {}
        for field, value in values.items():
            if getattr(group, field) != value:
                changed[field] = {"from": plain(getattr(group, field)), "to": plain(value)}
                setattr(group, field, value)
        if changed:
            group.save(update_fields=list(changed))
            record(EventKind.REQUEST_SETTINGS_CHANGED, actor=actor, target=group,
                   data={"changed": changed}, request=request)
    return sorted(changed)

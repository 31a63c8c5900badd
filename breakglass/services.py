"""Every change to grants: break glass (and its extension), expiry, revocation, reminders.
Each locks, checks, writes, records its audit event and queues alerts in one transaction."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from accounts.client_ip import client_ip
from accounts.models import SECURITY_REVIEWERS_GROUP, User
from audit.alerts import alert, alert_later, alert_later_statement
from audit.catalogue import EventKind, Outcome
from audit.db import fast_insert, insert_statement, load_instance, prepared_cursor
from audit.services import record
from breakglass.connectors import provision
from breakglass.models import Grant, Group
from review.models import Review
from review.services import blocking_message, blocking_review, review_of_grant
from risk.anomalies import describe as describe_flags
from risk.anomalies import flag_columns, flag_params, flags_from
from risk.models import Incident, RiskRule
from risk.rules import (
    UNSPECIFIED_SEVERITY,
    Path,
    RiskDecision,
    decide_risk,
    decide_severity,
)

MAX_REASON_LENGTH = 2000
REMINDER_BEFORE = timedelta(hours=1)


class GrantError(Exception):
    """A transition that is not allowed; `status` is the HTTP answer it maps to."""

    status = 409


class BreakGlassRefused(GrantError):
    status = 403


class InvalidInput(GrantError):
    status = 400

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def grant_data(grant: Grant) -> dict:
    data = {
        "group": grant.group.slug, "holder": grant.user.get_username(), "status": grant.status,
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        "incident": grant.incident, "severity": grant.severity, "source": grant.source,
    }
    if grant.is_drill:
        data["drill"] = True
    return data


def follow_up(event, *, action: str, template: str = "", audience: tuple = (),
              channels: tuple = ("email", "sms", "webhook"), flagged: bool = False) -> None:
    """One outbox row for everything a grant event sets off; the relay expands it with
    expand_grant_event: alerts to `audience` ("concerned", "holder") and the connectors'
    `action` ("grant" or "revoke"). A `flagged` use also reaches reviewers by SMS."""
    alert_later(event, GRANT_FANOUT, action=action, template=template,
                audience=list(audience), channels=list(channels), flagged=flagged)


GRANT_FANOUT = "breakglass.grant"


def expand_grant_event(event, *, action: str, template: str, audience: list,
                       channels: list, flagged: bool = False) -> None:
    """The relay's half of follow_up, in its transaction. The grant is shown as the event
    recorded it (expiry and status), whatever happened to it since."""
    grant = Grant.objects.select_related("group", "user").get(pk=int(event.target_id))
    if event.data.get("expires_at"):
        grant.expires_at = datetime.fromisoformat(event.data["expires_at"])
    grant.status = event.data.get("status", grant.status)
    users = []
    if "concerned" in audience:
        users += concerned(grant)
    if "holder" in audience:
        users.append(grant.user)
    context = {"grant": grant, "flags": describe_flags(event.data.get("risk", {}).get("flags", []))}
    if template == "break_glass" and action == "grant":
        # Each reviewer and owner gets a link of their own: "Not us — revoke and lock".
        from review.abort import abort_link

        for user in users:
            alert(event, users=[user], template=template,
                  channels=[channel for channel in channels if channel != "webhook"],
                  context={**context, "abort_link": abort_link(grant, user)})
        if "webhook" in channels:
            alert(event, channels=["webhook"], template=template, context=context)
    elif template and users:
        alert(event, users=users, channels=channels, template=template, context=context)
    if template and flagged and "sms" not in channels:
        # High priority: reviewers hear of a flagged use by SMS whatever the cell says.
        alert(event, users=User.objects.security_reviewers(), channels=["sms"],
              template=template, context=context)
    provision(event, grant, action)


def concerned(grant: Grant) -> list[User]:
    """Everyone a grant's alerts go to: security reviewers and the group's owners."""
    return list(User.objects.filter(
        Q(groups__name=SECURITY_REVIEWERS_GROUP) | Q(owned_groups=grant.group_id),
        is_active=True,
    ).distinct())


def schedule_expiry(grant: Grant, *, new: bool = False, with_first: tuple = ()) -> None:
    """A one-off django-q2 job at the expiry instant (the minute sweep is the safety net).
    `with_first`: another new row PostgreSQL writes in the same statement."""
    if new:
        fast_insert(Schedule(
            name=f"expire-grant-{grant.pk}", func="breakglass.tasks.expire_grant",
            args=repr(grant.pk), schedule_type=Schedule.ONCE, repeats=1,
            next_run=grant.expires_at,
        ), with_first=with_first)
        return
    Schedule.objects.update_or_create(
        name=f"expire-grant-{grant.pk}",
        defaults={"func": "breakglass.tasks.expire_grant", "args": repr(grant.pk),
                  "schedule_type": Schedule.ONCE, "repeats": 1, "next_run": grant.expires_at},
    )


_LOCK_GROUP_SQL = f"""
SELECT g.break_glass_minutes, EXISTS (
    SELECT 1 FROM {Group.break_glass_users.through._meta.db_table} b
      JOIN {User._meta.db_table} u ON u.id = b.user_id
     WHERE b.group_id = g.id AND b.user_id = %s AND u.is_active),
       g.sensitivity, g.armed_by_incident, g.end_grants_on_resolve, g.review_before_next,
       r.id, r.self_service, r.max_minutes, r.approvals, r.step_up, r.alert_email,
       r.alert_sms, r.alert_webhook, {{flags}}
  FROM {Group._meta.db_table} g
  LEFT JOIN {RiskRule._meta.db_table} r ON r.sensitivity = g.sensitivity AND r.severity = %s
 WHERE g.id = %s"""  # noqa: S608 (table names only)
_RULE_FIELDS = ["id", "self_service", "max_minutes", "approvals", "step_up", "alert_email",
                "alert_sms", "alert_webhook"]
# The conflict target of the one_open_grant_per_user_and_group constraint.
OPEN_GRANT_CONFLICT = "(user_id, group_id) WHERE status IN ({})".format(
    ", ".join(f"'{status}'" for status in Grant.OPEN_STATUSES))


def check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason", "Give a reason: it is shown to everyone who is alerted.")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput("reason", f"Keep the reason under {MAX_REASON_LENGTH} characters.")
    return reason


def refuse_break_glass(group: Group, *, actor, why: str, request=None,
                       decision: RiskDecision | None = None) -> None:
    """Record a refused attempt in its own transaction, then raise."""
    with transaction.atomic():
        record(EventKind.GRANT_REFUSED, actor=actor, target=group, request=request,
               outcome=Outcome.DENIED, reason=why,
               data={"risk": decision.as_data()} if decision else None)
    if decision is not None and decision.needs_code:
        raise StepUpRequired(why)
    raise BreakGlassRefused(why)


class StepUpRequired(BreakGlassRefused):
    """The rule cell wants a one-time code verified in the last 5 minutes."""


def find_incident(external_id: str) -> Incident | None:
    """The incident a break glass or request names by its external id; an unknown or resolved
    one is bad input."""
    external_id = (external_id or "").strip()
    if not external_id:
        return None
    incident = Incident.objects.filter(external_id=external_id).first()
    if incident is None:
        raise InvalidInput("incident", f"No incident {external_id!r} is known: open it through "
                                       "the API or the admin first.")
    if not incident.is_open:
        raise InvalidInput("incident", f"Incident {external_id} is resolved.")
    return incident


def break_glass(
    group: Group, *, actor, reason: str, incident: str = "", severity: str = "",
    holder: User | None = None, source: str = Grant.Source.BREAK_GLASS,
    request: HttpRequest | None = None, stepped_up_at: datetime | None = None,
    drill: bool = False,
) -> Grant:
    """Give `holder` (by default the actor themself) access to `group` at once, for the
    group's break-glass duration capped by the risk rule. `actor` may also be an application
    acting for the holder. `incident` is an open incident's external id; its severity (or
    `severity` without one, at most SEV3 on high and critical groups: decide_severity) picks
    the risk rule cell with the group's sensitivity. A typed severity counted lower is kept on
    the grant as `claimed_severity`.

    Only the group's break-glass users may hold it; a group armed by incidents needs an open
    one linked to it. Pressing again while active extends to now + duration (audited as an
    extension). Alerts security reviewers and the owners on the cell's channels, by SMS as
    well when an anomaly is flagged.
    """
    holder = holder or actor
    reason = check_reason(reason)
    linked = find_incident(incident)
    outcome = _open_or_extend(group, actor=actor, holder=holder, reason=reason,
                              incident=linked, severity=severity,
                              source=source, request=request, stepped_up_at=stepped_up_at,
                              drill=bool(drill))
    if isinstance(outcome, Grant):
        return outcome
    if isinstance(outcome, RiskDecision):
        refuse_break_glass(group, actor=actor, request=request, why=outcome.why,
                           decision=outcome)
    refuse_break_glass(group, actor=actor, request=request, why=outcome)


@transaction.atomic
def _open_or_extend(group, *, actor, holder, reason, incident, severity, source,
                    request, stepped_up_at, drill) -> Grant | RiskDecision | str:
    """The grant, or why not: a refused risk decision, or a sentence. `severity` is the one
    typed (an incident's wins over it)."""
    now = timezone.now()
    typed = severity
    severity, claimed = decide_severity(group.sensitivity, incident=incident, severity=typed)
    # Locking the group row serialises activations for it, so 50 simultaneous presses give
    # one activation and extensions. The same read tells whether the holder may break glass
    # here, and brings the risk rule's cell. A prepared statement, like the insert below: this
    # is the hot path.
    whence = _whence(actor, holder, request)
    with prepared_cursor() as cursor:
        lock = " FOR UPDATE OF g" if connection.features.has_select_for_update else ""
        cursor.execute(_LOCK_GROUP_SQL.format(
            flags=flag_columns(with_ip=bool(whence.get("ip")))) + lock, [
            holder.pk, *flag_params(holder, group, now=now, **whence),
            severity or UNSPECIFIED_SEVERITY, group.pk])
        locked = cursor.fetchone()
    if locked is None:
        raise GrantError("this group no longer exists")
    (group.break_glass_minutes, allowed, group.sensitivity, group.armed_by_incident,
     group.end_grants_on_resolve, group.review_before_next, *rule_row) = locked[:14]
    flag_values = locked[14:]
    if not allowed:
        return f"{holder.get_username()} is not a break-glass user of this group"
    if group.armed_by_incident and (
            incident is None or not incident.groups.filter(pk=group.pk).exists()):
        return (f"{group.name} can be broken into only during an open incident linked to it: "
                "choose that incident.")
    rule = load_instance(RiskRule, _RULE_FIELDS, rule_row) if rule_row[0] else None
    if decide_severity(group.sensitivity, incident=incident, severity=typed) != (
            severity, claimed):
        # The sensitivity changed before the lock: decide again with the locked one.
        severity, claimed = decide_severity(group.sensitivity, incident=incident,
                                            severity=typed)
        rule = None
    decision = decide_risk(Path.API if source == Grant.Source.API else Path.BREAK_GLASS,
                           sensitivity=group.sensitivity, severity=severity, claimed=claimed,
                           stepped_up_at=stepped_up_at, now=now, rule=rule)
    if not decision.allowed:
        return decision
    if group.review_before_next:
        refusal = _previous_use_unreviewed(group, holder, now)
        if refusal:
            return refusal
    duration = min(group.break_glass_duration, timedelta(minutes=decision.max_minutes))
    if drill:
        duration = min(duration, DRILL_DURATION)
    flags = flags_from(flag_values, now=now, ip=whence.get("ip", ""))
    risk = {**decision.as_data(), "flags": flags, "priority": "high" if flags else "normal"}
    grant = Grant(
        user=holder, group=group, status=Grant.Status.ACTIVE, source=source, reason=reason,
        incident=incident.external_id if incident else "", incident_record=incident,
        severity=severity, claimed_severity=claimed, requested_at=now, activated_at=now,
        expires_at=now + duration, risk=risk, is_drill=drill,
    )
    # The open-grant constraint decides: no row comes back when the holder already has an
    # open grant (the insert sees what the previous holder of the lock committed).
    if not fast_insert(grant, unless_conflict=OPEN_GRANT_CONFLICT):
        current = Grant.objects.open().select_for_update().get(user=holder, group=group)
        current.group, current.user = group, holder
        if current.status == Grant.Status.REQUESTED:
            from breakglass.access_requests import supersede

            supersede(current, actor=holder, request=request)
        elif current.expires_at > now and current.is_drill == drill:
            return _extend(current, actor=actor, reason=reason, request=request, now=now,
                           duration=duration, risk=risk)
        elif current.expires_at > now and drill:
            return (f"{holder.get_username()} has real access to this group already: a drill "
                    "cannot run over it.")
        elif current.expires_at > now:
            # A real emergency during a drill: the drill ends and a real use opens, with its
            # own alerts and review (a drill is never stretched into hours of access).
            _end(current, Grant.Status.REVOKED, ended_at=now, actor=actor, request=request,
                 reason="The drill ended: a real break glass replaced it.",
                 cause={"replaced_by_real_use": True})
        else:
            # Its instant passed but no worker has ended it yet: end it now, then open anew.
            _end(current, Grant.Status.EXPIRED, ended_at=current.expires_at, actor=None)
        fast_insert(grant)
    event = record(EventKind.GRANT_ACTIVATED, actor=actor, target=grant, reason=reason,
                   data={**grant_data(grant), "risk": risk}, request=request)
    fanout = {"action": "grant", "template": "break_glass", "audience": ["concerned"],
              "channels": list(decision.channels), "flagged": bool(flags)}
    # Every use opens its review. On PostgreSQL the review, the outbox row (follow_up's) and
    # the expiry job are one statement: this is the hot path.
    review = review_of_grant(grant, flags=flags, path=(
        Review.Path.API if source == Grant.Source.API else Review.Path.GROUP))
    if connection.vendor == "postgresql":
        schedule_expiry(grant, new=True, with_first=[
            insert_statement(review), alert_later_statement(event, GRANT_FANOUT, **fanout)])
    else:
        alert_later(event, GRANT_FANOUT, **fanout)
        fast_insert(review)
        schedule_expiry(grant, new=True)
    return grant


DRILL_DURATION = timedelta(minutes=15)


def _previous_use_unreviewed(group, holder, now) -> str:
    """Why the next use must wait, or "" (pressing again on one's own active grant extends
    the same use, which is not a next one)."""
    if Grant.objects.active(now).filter(user=holder, group=group).exists():
        return ""
    blocking = blocking_review(group=group)
    return blocking_message(blocking) if blocking else ""


def _whence(actor, holder, request) -> dict:
    """The holder's own address and session start for the new-IP flag; an application acting
    for them has neither."""
    if request is None or actor is not holder or not isinstance(actor, User):
        return {}
    return {"ip": client_ip(request), "session_began": getattr(actor, "last_login", None)}


def _extend(grant: Grant, *, actor, reason, request, now, duration, risk) -> Grant:
    previous = grant.expires_at
    grant.expires_at = now + duration
    grant.reminded_at = None
    grant.save(update_fields=["expires_at", "reminded_at"])
    data = {**grant_data(grant), "previous_expires_at": previous.isoformat(), "risk": risk}
    event = record(EventKind.GRANT_EXTENDED, actor=actor, target=grant, reason=reason,
                   data=data, request=request)
    follow_up(event, action="grant", template="break_glass", audience=("concerned",),
              channels=tuple(risk["channels"]), flagged=bool(risk["flags"]))
    schedule_expiry(grant)
    return grant


def _end(grant: Grant, status: str, *, ended_at, actor, reason: str = "", request=None,
         template: str = "", audience: tuple = (), channels: tuple = ("email", "sms", "webhook"),
         cause: dict | None = None):
    kind = EventKind.GRANT_EXPIRED if status == Grant.Status.EXPIRED else EventKind.GRANT_REVOKED
    grant.status = status
    grant.ended_at = ended_at
    grant.ended_by = actor if isinstance(actor, User) else None
    grant.end_reason = reason
    grant.save(update_fields=["status", "ended_at", "ended_by", "end_reason"])
    Schedule.objects.filter(name=f"expire-grant-{grant.pk}").delete()
    data = grant_data(grant) if cause is None else {**grant_data(grant), "cause": cause}
    event = record(kind, actor=actor, target=grant, reason=reason, data=data, request=request)
    follow_up(event, action="revoke", template=template, audience=audience,
               channels=channels)
    return event


@transaction.atomic
def expire_grant(grant_id: int) -> bool:
    """End a grant whose expiry instant has passed. Idempotent: a second call (or a second
    sweep at the same time) finds it already ended and does nothing."""
    grant = Grant.objects.select_for_update().select_related("group", "user").filter(
        pk=grant_id).first()
    if grant is None or not grant.can_become(Grant.Status.EXPIRED):
        return False
    if grant.expires_at > timezone.now():
        return False  # extended since the job was scheduled
    _end(grant, Grant.Status.EXPIRED, ended_at=grant.expires_at, actor=None,
         template="grant_ended", audience=("holder",), channels=("email",))
    return True


def expire_due_grants() -> int:
    """The minute sweep: expire every grant past its instant, each in its own transaction."""
    due = list(Grant.objects.due_to_expire().values_list("pk", flat=True))
    return sum(expire_grant(pk) for pk in due)


def can_end(actor: User, grant: Grant) -> bool:
    """The holder, the group's owners, security reviewers and administrators."""
    if actor.pk == grant.user_id or actor.is_superuser:
        return True
    if User.objects.security_reviewers().filter(pk=actor.pk).exists():
        return True
    return grant.group.owners.filter(pk=actor.pk).exists()


@transaction.atomic
def revoke_grant(grant: Grant, *, actor, reason: str = "",
                 request: HttpRequest | None = None) -> Grant:
    """End an active grant now ("End access now", an owner, a reviewer, an admin, the API).
    Raises GrantError (409) if it has already ended."""
    grant = Grant.objects.select_for_update().select_related("group", "user").get(pk=grant.pk)
    if not grant.gives_access():
        raise GrantError(f"this grant is {grant.get_status_display().lower()}, not active")
    _end(grant, Grant.Status.REVOKED, ended_at=timezone.now(), actor=actor,
         reason=(reason or "").strip()[:MAX_REASON_LENGTH], request=request,
         template="grant_ended", audience=("concerned", "holder"))
    return grant


@transaction.atomic
def revoke_all(group: Group | None, *, actor: User, reason: str,
               request: HttpRequest | None = None) -> int:
    """End every active grant of `group` (or everywhere) in one audited step."""
    reason = check_reason(reason)
    grants = Grant.objects.select_for_update().filter(status=Grant.Status.ACTIVE)
    if group is not None:
        grants = grants.filter(group=group)
    ids = list(grants.order_by("pk").values_list("pk", flat=True))
    summary = record(EventKind.GRANTS_REVOKED_ALL, actor=actor, target=group, reason=reason,
                     data={"grants": len(ids), "group": group.slug if group else None},
                     request=request)
    alert(summary, users=User.objects.security_reviewers(), template="event")
    for grant in Grant.objects.filter(pk__in=ids).select_related("group", "user"):
        if grant.expires_at <= timezone.now():
            _end(grant, Grant.Status.EXPIRED, ended_at=grant.expires_at, actor=None)
        else:
            _end(grant, Grant.Status.REVOKED, ended_at=timezone.now(), actor=actor,
                 reason=reason, request=request)
    return len(ids)


def send_expiry_reminders() -> int:
    """Tell each holder once, an hour before their access ends."""
    now = timezone.now()
    due = Grant.objects.filter(status=Grant.Status.ACTIVE, reminded_at__isnull=True,
                               expires_at__gt=now, expires_at__lte=now + REMINDER_BEFORE)
    sent = 0
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            grant = Grant.objects.select_for_update().select_related("group", "user").get(pk=pk)
            if grant.reminded_at or not grant.gives_access():
                continue
            grant.reminded_at = now
            grant.save(update_fields=["reminded_at"])
            event = record(EventKind.GRANT_EXPIRY_REMINDER, actor=None, target=grant,
                           data=grant_data(grant))
            alert(event, users=[grant.user], channels=["email", "sms"],
                  template="expiry_reminder", context={
                      "grant": grant, "extension_link": settings.SITE_URL.rstrip("/")
                      + reverse("breakglass:my-access") + f"#extend-{grant.pk}"})
            sent += 1
    return sent


@transaction.atomic
def set_break_glass_users(group: Group, users: list[User], *, actor: User,
                          request: HttpRequest | None = None) -> None:
    """An owner replaces the group's break-glass users (from the group page)."""
    group = Group.objects.select_for_update().get(pk=group.pk)
    before = break_glass_usernames(group)
    group.break_glass_users.set(users)
    record_break_glass_users_change(group, before, actor=actor, request=request)


def break_glass_usernames(group: Group) -> set[str]:
    return set(group.break_glass_users.values_list("username", flat=True))


def record_break_glass_users_change(group: Group, before: set[str], *, actor: User,
                                    request: HttpRequest | None = None) -> None:
    """Audit a change of who may break glass, wherever it was made (the group page, the
    admin's group form); nothing when the list is unchanged."""
    after = break_glass_usernames(group)
    if before != after:
        record(EventKind.BREAK_GLASS_USERS_CHANGED, actor=actor, target=group, request=request,
               data={"added": sorted(after - before), "removed": sorted(before - after)})


def may_revoke_any(user: User) -> bool:
    """Who may end any grant and revoke all from the admin: administrators, security
    reviewers and staff given the breakglass.revoke_grant permission."""
    return (user.is_active and (user.is_superuser or user.has_perm("breakglass.revoke_grant")
                                or User.objects.security_reviewers().filter(pk=user.pk).exists()))


def visible_grants(actor: User):
    """Grants an actor may look at: their own, their groups' (as owner), all for reviewers."""
    if actor.is_superuser or User.objects.security_reviewers().filter(pk=actor.pk).exists():
        return Grant.objects.all()
    return Grant.objects.filter(Q(user=actor) | Q(group__owners=actor)).distinct()


@transaction.atomic
def create_application(name: str, scopes: list[str], *, actor) -> tuple:
    """A new API application; returns it with its token, which is never stored or shown
    again."""
    from breakglass.models import Application, Scope
    from breakglass.tokens import new_token

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
def rotate_token(application, *, actor, request: HttpRequest | None = None) -> str:
    """Replace an application's token ("Generate token"): the old one stops working at once."""
    from breakglass.models import Application
    from breakglass.tokens import new_token

    application = Application.objects.select_for_update().get(pk=application.pk)
    old_prefix = application.token_prefix
    token, application.token_prefix, application.token_hash = new_token()
    application.save(update_fields=["token_prefix", "token_hash"])
    record(EventKind.TOKEN_ROTATED, actor=actor, target=application, request=request,
           data={"old_prefix": old_prefix, "new_prefix": application.token_prefix})
    return token


MAX_ACTIVITY_SKEW = timedelta(minutes=5)


@transaction.atomic
def report_activity(grant: Grant, *, application, action: str, detail: str = "",
                    at=None, request: HttpRequest | None = None):
    """A system reports an action taken under an active grant; refused (409) once it ended.
    `at` may not lie in the future (beyond a little clock skew) or before the activation."""
    from breakglass.models import GrantActivity

    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    now = timezone.now()
    if not grant.gives_access(now):
        raise GrantError(f"this grant is {grant.get_status_display().lower()}, not active")
    at = at or now
    if timezone.is_naive(at):
        raise InvalidInput("at", "needs a time zone offset (or Z for UTC)")
    if at > now + MAX_ACTIVITY_SKEW:
        raise InvalidInput("at", "lies in the future")
    if at < grant.activated_at - MAX_ACTIVITY_SKEW:
        raise InvalidInput("at", "lies before the grant was activated")
    activity = GrantActivity.objects.create(grant=grant, action=action, detail=detail,
                                            happened_at=at, reported_at=now,
                                            application=application)
    record(EventKind.GRANT_ACTIVITY, actor=application, target=grant, request=request,
           data={"action": action, "detail": detail[:500], "at": at.isoformat(),
                 "activity": activity.pk})
    return activity

"""Every transition of a grant, one public function each (the statuses and the moves between
them are Grant.TRANSITIONS). Each locks the grant, checks the move is allowed, writes,
records its one audit kind and emits its follow-up through `follow_up()`, in the caller's
transaction. `follow_up()` is the one place alerts and connectors hang on: a connector told
there hears of every activation, extension and end, whichever door it came through."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from accounts.models import SECURITY_REVIEWERS_GROUP, User
from audit.alerts import alert, alert_later, alert_later_many, fanout_row
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.reasons import check_reason
from audit.services import record, record_many
from breakglass import sql
from breakglass.models import Application, Grant, Group
from breakglass.services.connectors import missing_login_message, missing_logins, provision
from breakglass.services.errors import InvalidInput, NotAllowed, TransitionRefused
from review.abort_links import abort_link
from review.models import Review
from risk.anomalies import describe as describe_flags
from risk.models import Incident

GRANT_FANOUT = "breakglass.grant"
REMINDER_BEFORE = timedelta(hours=1)
ALL_CHANNELS = ("email", "sms", "webhook")


# --- Who is concerned, and what they may do ------------------------------------------------

def grant_data(grant: Grant) -> dict:
    data = {
        "group": grant.group.slug, "holder": grant.user.get_username(), "status": grant.status,
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        "incident": grant.incident, "severity": grant.severity, "source": grant.source,
    }
    if grant.is_drill:
        data["drill"] = True
    return data


def concerned(grant: Grant) -> list[User]:
    """Everyone a grant's alerts go to: security reviewers and the group's owners."""
    return list(User.objects.filter(
        Q(groups__name=SECURITY_REVIEWERS_GROUP) | Q(owned_groups=grant.group_id),
        is_active=True,
    ).distinct())


def may_revoke_any(user: User) -> bool:
    """Who may end any grant and revoke all: administrators, security reviewers and staff
    given the breakglass.revoke_grant permission."""
    return bool(user.is_active and (user.is_superuser or user.has_perm("breakglass.revoke_grant")
                                    or user.is_security_reviewer))


def may_end(actor: User, grant: Grant) -> bool:
    """The holder, the group's owners, and whoever may revoke any grant."""
    if actor.pk == grant.user_id or may_revoke_any(actor):
        return True
    return grant.group.owners.filter(pk=actor.pk, is_active=True).exists()


def may_abort(user: User, grant: Grant) -> bool:
    """Security reviewers, administrators and the group's owners (the abort link's alert
    went to them)."""
    if user.is_superuser or user.is_security_reviewer:
        return True
    return grant.group.owners.filter(pk=user.pk).exists()


def visible_grants(actor: User):
    """Grants an actor may look at: their own, their groups' (as owner), all for reviewers."""
    if actor.is_superuser or actor.is_security_reviewer:
        return Grant.objects.all()
    return Grant.objects.filter(Q(user=actor) | Q(group__owners=actor)).distinct()


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


# --- The follow-up every transition emits --------------------------------------------------

def _fanout(*, action: str, template: str = "", audience: tuple = (),
            channels: tuple = ALL_CHANNELS, flagged: bool = False) -> dict:
    return {"action": action, "template": template, "audience": list(audience),
            "channels": list(channels), "flagged": flagged}


def follow_up(event: AuditEvent, *, action: str, **fanout) -> None:
    """One outbox row for everything a grant event sets off; the relay expands it with
    expand_grant_event: alerts to the `audience` ("concerned", "owners", "holder") with
    `template` on `channels`, and every connector's `action` ("grant" or "revoke"). A
    `flagged` use also reaches reviewers by SMS."""
    alert_later(event, GRANT_FANOUT, **_fanout(action=action, **fanout))


def expand_grant_event(event: AuditEvent, *, action: str, template: str, audience: list,
                       channels: list, flagged: bool = False) -> None:
    """The relay's half of follow_up, in its transaction. The grant is shown as the event
    recorded it (expiry and status), whatever happened to it since."""
    grant = Grant.objects.select_related("group", "user").get(pk=int(event.target_id))
    if event.data.get("expires_at"):
        grant.expires_at = datetime.fromisoformat(event.data["expires_at"])
    grant.status = event.data.get("status", grant.status)
    users = _audience(grant, audience)
    context = {"grant": grant, "flags": describe_flags(event.data.get("risk", {}).get("flags", [])),
               "previous_expires_at": _previous_expiry(event)}
    if template == "break_glass" and action == "grant":
        # Each reviewer and owner gets a link of their own: "Not us — revoke and lock".
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


def _audience(grant: Grant, audience: list) -> list[User]:
    users = []
    if "concerned" in audience:
        users += concerned(grant)
    if "owners" in audience:
        users += list(grant.group.owners.filter(is_active=True).exclude(pk=grant.user_id))
    if "holder" in audience:
        users.append(grant.user)
    return list(dict.fromkeys(users))


def _previous_expiry(event: AuditEvent) -> datetime | None:
    previous = event.data.get("previous_expires_at")
    return datetime.fromisoformat(previous) if previous else None


def expiry_job_name(grant_id: int) -> str:
    return f"expire-grant-{grant_id}"


def expiry_job(grant: Grant) -> Schedule:
    """The one-off django-q2 job ending the grant at its instant, not yet written (the minute
    sweep is the safety net)."""
    return Schedule(name=expiry_job_name(grant.pk), func="breakglass.tasks.expire_grant",
                    args=repr(grant.pk), schedule_type=Schedule.ONCE, repeats=1,
                    next_run=grant.expires_at)


def _reschedule_expiry(grant: Grant) -> None:
    job = expiry_job(grant)
    Schedule.objects.update_or_create(name=job.name, defaults={
        "func": job.func, "args": job.args, "schedule_type": job.schedule_type,
        "repeats": job.repeats, "next_run": job.next_run})


# --- The transitions -------------------------------------------------------------------------

def _locked(grant: Grant | int) -> Grant:
    # The grant row only: the group's row is break glass's serialiser, and locking it here
    # too would deadlock revoke all against a holder pressing again.
    return (Grant.objects.select_for_update(of=("self",)).select_related("group", "user")
            .get(pk=grant if isinstance(grant, int) else grant.pk))


def _check_move(grant: Grant, status: str) -> None:
    if not grant.can_become(status):
        raise TransitionRefused(f"this grant is {grant.get_status_display().lower()}; it cannot "
                                f"become {Grant.Status(status).label.lower()}")


def open_grant(grant: Grant, *, actor, request: HttpRequest | None, review: Review,
               channels: tuple, flagged: bool) -> AuditEvent:
    """Record a break-glass grant just inserted as active (breakglass.services.break_glass
    decides and inserts it): its activation event, its review, its follow-up (concerned
    people alerted on the risk cell's `channels`, connectors told) and its expiry job, the
    last three in one statement where the database allows."""
    if grant.status != Grant.Status.ACTIVE or grant.pk is None:
        raise TransitionRefused("only a newly inserted active grant is opened")
    event = record(EventKind.GRANT_ACTIVATED, actor=actor, target=grant, reason=grant.reason,
                   data={**grant_data(grant), "risk": grant.risk}, request=request)
    fanout = fanout_row(event, GRANT_FANOUT, _fanout(
        action="grant", template="break_glass", audience=("concerned",), channels=channels,
        flagged=flagged))
    sql.insert_activation_rows(review=review, fanout=fanout, schedule=expiry_job(grant))
    return event


@transaction.atomic
def activate_grant(grant: Grant, *, actor, duration: timedelta, request=None,
                   data: dict | None = None) -> Grant:
    """requested → active: an approved request's grant starts now, for `duration`. Connectors
    are told; the requester hears through the request's decision."""
    grant = _locked(grant)
    _check_move(grant, Grant.Status.ACTIVE)
    if missing := missing_logins(grant.group_id, grant.user):
        # Set to explicit logins, or a connector added, after the request was made.
        raise NotAllowed(missing_login_message(missing, grant.user))
    now = timezone.now()
    grant.status, grant.activated_at, grant.expires_at = Grant.Status.ACTIVE, now, now + duration
    grant.save(update_fields=["status", "activated_at", "expires_at"])
    event = record(EventKind.GRANT_ACTIVATED, actor=actor, target=grant, reason=grant.reason,
                   data={**grant_data(grant), **(data or {})}, request=request)
    follow_up(event, action="grant")
    _reschedule_expiry(grant)
    return grant


@transaction.atomic
def extend_grant(grant: Grant, *, actor, until: datetime, at: datetime | None = None,
                 reason: str = "", request=None, data: dict | None = None, **fanout) -> Grant:
    """active → active until `until`, never shorter than it is now (`at`, the caller's
    instant, decides whether it is still active). Break glass pressed again passes its alert
    `fanout` (concerned, the risk cell's channels), recorded and sent even when the end does
    not move; an approved extension tells the group's owners by email when it does."""
    grant = _locked(grant)
    if not grant.gives_access(at or timezone.now()):
        raise TransitionRefused(f"this grant is {grant.get_status_display().lower()}, not "
                                "active: it cannot be extended")
    previous = grant.expires_at
    moved = until > previous
    if moved:
        grant.expires_at, grant.reminded_at = until, None
        grant.save(update_fields=["expires_at", "reminded_at"])
        _reschedule_expiry(grant)
    event = record(EventKind.GRANT_EXTENDED, actor=actor, target=grant, reason=reason,
                   request=request, data={**grant_data(grant), **(data or {}),
                                          "previous_expires_at": previous.isoformat(),
                                          **({} if moved else {"unchanged": True})})
    if not fanout and moved:
        fanout = {"template": "grant_extended", "audience": ("owners",), "channels": ("email",)}
    follow_up(event, action="grant", **fanout)
    return grant


def _end(grant: Grant, status: str, *, ended_at, actor, reason: str = "", request=None,
         cause: dict | None = None, **fanout) -> AuditEvent:
    """The shared half of expiry and revocation, on a grant locked and checked."""
    grant.status, grant.ended_at, grant.end_reason = status, ended_at, reason
    grant.ended_by = actor if isinstance(actor, User) else None
    grant.save(update_fields=["status", "ended_at", "ended_by", "end_reason"])
    Schedule.objects.filter(name=expiry_job(grant).name).delete()
    kind = EventKind.GRANT_EXPIRED if status == Grant.Status.EXPIRED else EventKind.GRANT_REVOKED
    data = grant_data(grant) if cause is None else {**grant_data(grant), "cause": cause}
    event = record(kind, actor=actor, target=grant, reason=reason, data=data, request=request)
    follow_up(event, action="revoke", **fanout)
    return event


@transaction.atomic
def expire_grant(grant: Grant | int, *, tell: bool = True) -> bool:
    """active → expired, once its instant has passed: the holder is told by email (`tell`;
    not when a cause ends it on the way past, see end_grant_now). False (nothing done) while
    the instant lies ahead (extended since the job was planned); a grant that already ended
    is refused like any forbidden move (the tasks treat that as done)."""
    grant = _locked(grant)
    _check_move(grant, Grant.Status.EXPIRED)
    if grant.expires_at > timezone.now():
        return False
    told = {"template": "grant_ended", "audience": ("holder",), "channels": ("email",)}
    _end(grant, Grant.Status.EXPIRED, ended_at=grant.expires_at, actor=None,
         **(told if tell else {}))
    return True


EXPIRY_BATCH = 500


def expire_due_grants(*, batch_size: int = EXPIRY_BATCH) -> int:
    """The minute sweep: expire every grant past its instant, oldest instant first,
    `batch_size` at a time. Each batch is one transaction that commits before the next is
    chosen, so none holds the audit chain's lock long or piles up versions of its head row.
    On PostgreSQL a batch skips grants another sweep has locked: sweeps on several nodes share
    the work without waiting on each other. Returns how many grants it expired."""
    expired = 0
    while True:
        chosen, ended = _expire_next_batch(batch_size)
        expired += ended
        if not chosen:
            return expired


@transaction.atomic
def _expire_next_batch(batch_size: int) -> tuple[int, int]:
    now = timezone.now()
    due = Grant.objects.due_to_expire(now).order_by("expires_at", "pk")
    if connection.features.has_select_for_update_skip_locked:
        due = due.select_for_update(skip_locked=True)
    chosen = list(due.values_list("pk", flat=True)[:batch_size])
    if not chosen:
        return 0, 0
    return len(chosen), len(expire_grants(chosen, at=now))


@transaction.atomic
def expire_grants(pks: list[int], *, at: datetime) -> list[Grant]:
    """expire_grant for many grants at once (the sweep's batches): of `pks`, those still
    active and past their instant at `at` become expired at it, each with the expiry event,
    holder's message and connectors' revocation expire_grant writes, in a few statements for
    the whole batch. Grants ended meanwhile, or extended past `at`, are left alone: they are
    locked and checked here, whatever the caller saw. Returns the grants it expired."""
    # By key alone, checked once locked: a filter on status would let the planner walk the
    # whole (status, expires_at) range, every batch the length of what is left.
    locked = (Grant.objects.filter(pk__in=pks).select_for_update(of=("self",))
              .select_related("group", "user").order_by("expires_at", "pk"))
    grants = [grant for grant in locked
              if grant.status == Grant.Status.ACTIVE and grant.expires_at <= at]
    if not grants:
        return []
    Grant.objects.filter(pk__in=[grant.pk for grant in grants]).update(
        status=Grant.Status.EXPIRED, ended_at=F("expires_at"), ended_by=None, end_reason="")
    Schedule.objects.filter(name__in=[expiry_job_name(grant.pk) for grant in grants]).delete()
    for grant in grants:
        grant.status, grant.ended_at, grant.ended_by, grant.end_reason = (
            Grant.Status.EXPIRED, grant.expires_at, None, "")
    events = record_many(EventKind.GRANT_EXPIRED, [(grant, grant_data(grant)) for grant in grants],
                         actor=None)
    alert_later_many(events, GRANT_FANOUT, **_fanout(
        action="revoke", template="grant_ended", audience=("holder",), channels=("email",)))
    return grants


@transaction.atomic
def revoke_grant(grant: Grant, *, actor, reason: str = "", request: HttpRequest | None = None,
                 cause: dict | None = None, tell: bool = True,
                 at: datetime | None = None) -> Grant:
    """active → revoked now. Without a `cause` it is the actor's own choice: a person must be
    the holder, an owner of the group, or someone who may revoke any grant (an application
    is checked by the API's scope). With one (an incident resolved, an abort link, a drill
    replaced, revoke all) the caller's own service has checked its right. `tell`: the holder
    and everyone concerned get "access ended"; callers sending their own alert pass False."""
    grant = _locked(grant)
    # Fail closed: only the system (None) and applications (checked by their scope) skip it.
    if cause is None and not (actor is None or isinstance(actor, Application)) and not (
            isinstance(actor, User) and may_end(actor, grant)):
        raise NotAllowed("Only the holder, the group's owners and security reviewers end "
                         "this access.")
    _check_move(grant, Grant.Status.REVOKED)
    at = at or timezone.now()
    if not grant.gives_access(at):
        raise TransitionRefused("this grant has passed its expiry; it is ending on its own")
    reason = check_reason(reason, invalid=InvalidInput, required=False)
    _end(grant, Grant.Status.REVOKED, ended_at=at, actor=actor, reason=reason,
         request=request, cause=cause, **({"template": "grant_ended",
                                           "audience": ("concerned", "holder")} if tell else {}))
    return grant


@transaction.atomic
def end_grant_now(grant: Grant, *, actor, reason: str, cause: dict, tell: bool,
                  request=None) -> str:
    """End an active grant for a cause beyond its holder (an incident resolved, revoke all,
    a drill replaced): revoked now, or, if its instant has already passed, expired at it
    without a second "ended" message. Decided under the grant's lock with one clock reading,
    so a grant crossing its instant meanwhile never fails the whole cause. Returns the status
    it ended in."""
    grant = _locked(grant)
    now = timezone.now()
    if grant.status != Grant.Status.ACTIVE:
        return grant.status  # ended by someone else meanwhile
    if not grant.gives_access(now):
        expire_grant(grant, tell=False)
        return Grant.Status.EXPIRED
    revoke_grant(grant, actor=actor, reason=reason, request=request, cause=cause, tell=tell,
                 at=now)
    return Grant.Status.REVOKED


@transaction.atomic
def revoke_all(group: Group | None, *, actor: User, reason: str,
               request: HttpRequest | None = None) -> int:
    """End every active grant of `group` (or everywhere) in one audited step; security
    reviewers are alerted once. Only those who may revoke any grant."""
    if not may_revoke_any(actor):
        raise NotAllowed("Only security reviewers and administrators revoke all access.")
    reason = check_reason(reason, invalid=InvalidInput)
    grants = Grant.objects.select_for_update().filter(status=Grant.Status.ACTIVE)
    if group is not None:
        grants = grants.filter(group=group)
    ids = list(grants.order_by("pk").values_list("pk", flat=True))
    summary = record(EventKind.GRANTS_REVOKED_ALL, actor=actor, target=group, reason=reason,
                     data={"grants": len(ids), "group": group.slug if group else None},
                     request=request)
    alert(summary, users=User.objects.security_reviewers(), template="event")
    for grant in Grant.objects.filter(pk__in=ids).select_related("group", "user"):
        end_grant_now(grant, actor=actor, reason=reason, request=request,
                      cause={"revoke_all": summary.sequence}, tell=False)
    return len(ids)


@transaction.atomic
def abort_grant(grant: Grant, *, actor: User, request: HttpRequest | None = None) -> bool:
    """"Not us": end the grant now if it still gives access, lock its holder's account pending
    review and mark the use's review aborted; everyone concerned and the holder are told.
    Only security reviewers and the group's owners. Returns whether access was ended."""
    grant = _locked(grant)
    if not may_abort(actor, grant):
        raise NotAllowed("Only security reviewers and the group's owners abort a use.")
    holder = User.objects.select_for_update().get(pk=grant.user_id)
    reason = (f"Not us: {actor.get_username()} revoked this access and locked "
              f"{holder.get_username()} from the alert's link.")
    now = timezone.now()
    ended = grant.gives_access(now)
    if ended:
        revoke_grant(grant, actor=actor, reason=reason, request=request,
                     cause={"abort_link": True}, tell=False, at=now)
    was_active, holder.is_active = holder.is_active, False
    holder.save(update_fields=["is_active"])
    review = Review.objects.filter(grant=grant).first()
    if review is not None:
        review.aborted_at = now
        review.save(update_fields=["aborted_at"])
    event = record(EventKind.GRANT_ABORTED, actor=actor, target=grant, reason=reason,
                   request=request, data={"holder": holder.get_username(), "grant_ended": ended,
                                          "account_locked": was_active,
                                          "group": grant.group.slug})
    alert(event, users=[*concerned(grant), holder], template="event")
    return ended


def _close_requested(grant: Grant, status: str, kind: str, *, actor, reason: str,
                     cause: dict, request=None) -> None:
    """The shared half of deny and lapse: nothing was given, so connectors have nothing to
    take back and no follow-up is sent; the request's own event tells the requester."""
    grant = _locked(grant)
    _check_move(grant, status)
    grant.status, grant.ended_at, grant.end_reason = status, timezone.now(), reason
    grant.ended_by = actor if isinstance(actor, User) else None
    grant.save(update_fields=["status", "ended_at", "ended_by", "end_reason"])
    record(kind, actor=actor, target=grant, reason=reason, request=request,
           data={**grant_data(grant), "cause": cause})


@transaction.atomic
def deny_requested_grant(grant: Grant, *, actor, reason: str, cause: dict,
                         request: HttpRequest | None = None) -> None:
    """requested → denied: its request was denied, withdrawn or superseded."""
    _close_requested(grant, Grant.Status.DENIED, EventKind.GRANT_DENIED, actor=actor,
                     reason=reason, cause=cause, request=request)


@transaction.atomic
def lapse_requested_grant(grant: Grant, *, reason: str, cause: dict) -> None:
    """requested → lapsed: its request was still pending at its expiry (or its incident was
    resolved)."""
    _close_requested(grant, Grant.Status.LAPSED, EventKind.GRANT_LAPSED, actor=None,
                     reason=reason, cause=cause)


# --- Reminders -------------------------------------------------------------------------------

def send_expiry_reminders() -> int:
    """Tell each holder once, an hour before their access ends."""
    now = timezone.now()
    due = Grant.objects.filter(status=Grant.Status.ACTIVE, reminded_at__isnull=True,
                               expires_at__gt=now, expires_at__lte=now + REMINDER_BEFORE)
    return sum(_remind(pk, now) for pk in list(due.values_list("pk", flat=True)))


@transaction.atomic
def _remind(pk: int, now) -> bool:
    grant = _locked(pk)
    if grant.reminded_at or not grant.gives_access():
        return False
    grant.reminded_at = now
    grant.save(update_fields=["reminded_at"])
    event = record(EventKind.GRANT_EXPIRY_REMINDER, actor=None, target=grant,
                   data=grant_data(grant))
    alert(event, users=[grant.user], channels=["email", "sms"], template="expiry_reminder",
          context={"grant": grant, "extension_link": settings.SITE_URL.rstrip("/")
                   + reverse("breakglass:my-access") + f"#extend-{grant.pk}"})
    return True

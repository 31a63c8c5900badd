"""Break glass: access at once, with a reason, for a group's break-glass users (or an
application acting for one). Built on the grant transitions of `grants`; this module only
decides (who, which rule cell, how long) and inserts the new grant."""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.client_ip import client_ip
from accounts.models import User
from audit.catalogue import EventKind, Outcome
from audit.reasons import check_reason
from audit.services import record
from breakglass import sql
from breakglass.models import Grant, Group
from breakglass.services import connectors, grants, requests
from breakglass.services.errors import (
    BreakGlassRefused,
    GrantError,
    InvalidInput,
    StepUpRequired,
)
from review.models import Review
from review.services import blocking_message, blocking_review, review_of_grant
from risk.anomalies import flags_from
from risk.models import Incident
from risk.rules import UNSPECIFIED_SEVERITY, Path, RiskDecision, decide_risk, decide_severity

DRILL_DURATION = timedelta(minutes=15)


@dataclass(frozen=True)
class Ask:
    """One press of the button: who acts, for whom, why, under which incident and severity."""

    actor: object
    holder: User
    reason: str
    incident: Incident | None
    severity: str  # as typed; an incident's wins over it
    source: str
    request: HttpRequest | None
    stepped_up_at: datetime | None
    drill: bool
    whence: dict  # the holder's own address and session start (_whence), read once


class Refusal(Exception):
    """Why break glass is refused, raised inside the locked transaction and recorded after
    it rolled back (the refusal must leave a trace even though nothing else is written)."""

    def __init__(self, why: str, decision: RiskDecision | None = None):
        super().__init__(why)
        self.why, self.decision = why, decision


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
    well when an anomaly is flagged. A refusal is recorded (grant.refused) and raised as
    BreakGlassRefused, or StepUpRequired when the cell wants a fresh code."""
    ask = Ask(actor=actor, holder=holder or actor,
              reason=check_reason(reason, invalid=InvalidInput),
              incident=grants.find_incident(incident), severity=severity, source=source,
              request=request, stepped_up_at=stepped_up_at, drill=bool(drill),
              whence=_whence(actor, holder or actor, request))
    try:
        return _open_or_extend(group, ask)
    except Refusal as refusal:
        _record_refusal(group, ask, refusal)
        if refusal.decision is not None and refusal.decision.needs_code:
            raise StepUpRequired(refusal.why) from None
        raise BreakGlassRefused(refusal.why) from None


def _record_refusal(group: Group, ask: Ask, refusal: Refusal) -> None:
    with transaction.atomic():
        record(EventKind.GRANT_REFUSED, actor=ask.actor, target=group, request=ask.request,
               outcome=Outcome.DENIED, reason=refusal.why,
               data={"risk": refusal.decision.as_data()} if refusal.decision else None)


@transaction.atomic
def _open_or_extend(group: Group, ask: Ask) -> Grant:
    sql.wait_for_holder(ask.holder)
    locked, severity, claimed = _lock(group, ask, timezone.now())
    # The clock after the lock: presses queued behind others decide on the present.
    now = timezone.now()
    decision = decide_risk(Path.API if ask.source == Grant.Source.API else Path.BREAK_GLASS,
                           sensitivity=locked.sensitivity, severity=severity, claimed=claimed,
                           stepped_up_at=ask.stepped_up_at, now=now, rule=locked.rule)
    if not decision.allowed:
        raise Refusal(decision.why, decision)
    if locked.review_before_next:
        _check_previous_use_reviewed(group, ask.holder, now)
    duration = min(Group(break_glass_minutes=locked.break_glass_minutes).break_glass_duration,
                   timedelta(minutes=decision.max_minutes))
    if ask.drill:
        duration = min(duration, DRILL_DURATION)
    flags = flags_from(locked.flags, now=now, ip=ask.whence.get("ip", ""))
    risk = {**decision.as_data(), "flags": flags, "priority": "high" if flags else "normal"}
    grant = Grant(
        user=ask.holder, group=group, status=Grant.Status.ACTIVE, source=ask.source,
        reason=ask.reason, incident=ask.incident.external_id if ask.incident else "",
        incident_record=ask.incident, severity=severity, claimed_severity=claimed,
        requested_at=now, activated_at=now, expires_at=now + duration, risk=risk,
        is_drill=ask.drill,
    )
    if not sql.insert_open_grant(grant):
        current = Grant.objects.open().select_for_update().get(user=ask.holder, group=group)
        if _make_way(current, ask, now):
            return grants.extend_grant(
                current, actor=ask.actor, until=now + duration, at=now, reason=ask.reason,
                request=ask.request, data={"risk": risk}, template="break_glass",
                audience=("concerned",), channels=tuple(decision.channels),
                flagged=bool(flags))
        sql.insert_open_grant(grant)
    review = review_of_grant(grant, flags=flags, path=(
        Review.Path.API if ask.source == Grant.Source.API else Review.Path.GROUP))
    grants.open_grant(grant, actor=ask.actor, request=ask.request, review=review,
                      channels=tuple(decision.channels), flagged=bool(flags))
    return grant


def _lock(group: Group, ask: Ask, now) -> tuple[sql.LockedGroup, str, str]:
    """Lock the group and read its settings, the holder's right and the rule cell; check the
    right and the incident. Returns the locked read and the (severity, claimed) that pick
    the cell, decided on the locked sensitivity."""
    severity, claimed = decide_severity(group.sensitivity, incident=ask.incident,
                                        severity=ask.severity)
    locked = sql.lock_group_for_break_glass(group, ask.holder, severity=severity or
                                            UNSPECIFIED_SEVERITY, now=now, **ask.whence)
    if locked is None:
        raise GrantError("this group no longer exists")
    if not locked.may_break_glass:
        raise Refusal(f"{ask.holder.get_username()} is not a break-glass user of this group")
    if locked.login_missing:
        missing = connectors.missing_logins(group, ask.holder)
        raise Refusal(connectors.missing_login_message(missing, ask.holder))
    if locked.armed_by_incident and (
            ask.incident is None or not ask.incident.groups.filter(pk=group.pk).exists()):
        raise Refusal(f"{group.name} can be broken into only during an open incident linked "
                      "to it: choose that incident.")
    if locked.sensitivity != group.sensitivity:
        # The sensitivity changed before the lock: decide again with the locked one, whose
        # rule cell the read did not bring.
        severity, claimed = decide_severity(locked.sensitivity, incident=ask.incident,
                                            severity=ask.severity)
        locked = replace(locked, rule=None)
    return locked, severity, claimed


def _make_way(current: Grant, ask: Ask, now) -> bool:
    """The holder already has an open grant here. True when pressing again extends it;
    otherwise it is ended (a pending request withdrawn, a drill replaced by a real use, a
    grant past its instant expired) so a new one can open, or the press is refused."""
    if current.status == Grant.Status.REQUESTED:
        requests.supersede_request(current, actor=ask.holder, request=ask.request)
        return False
    if current.expires_at > now and current.is_drill == ask.drill:
        return True
    if current.expires_at > now and ask.drill:
        raise Refusal(f"{ask.holder.get_username()} has real access to this group already: a "
                      "drill cannot run over it.")
    # A real emergency during a drill: the drill ends and a real use opens, with its own
    # alerts and review (a drill is never stretched into hours of access). A grant past its
    # instant that no worker has ended yet expires now.
    grants.end_grant_now(current, actor=ask.actor, request=ask.request, tell=False,
                         reason="The drill ended: a real break glass replaced it.",
                         cause={"replaced_by_real_use": True})
    return False


def _check_previous_use_reviewed(group: Group, holder: User, now) -> None:
    """The next use waits for the review of the previous one (pressing again on one's own
    active grant extends the same use, which is not a next one)."""
    if Grant.objects.active(now).filter(user=holder, group=group).exists():
        return
    blocking = blocking_review(group=group)
    if blocking:
        raise Refusal(blocking_message(blocking))


def _whence(actor, holder: User, request: HttpRequest | None) -> dict:
    """The holder's own address and session start for the new-IP flag; an application acting
    for them has neither."""
    if request is None or actor is not holder or not isinstance(actor, User):
        return {}
    return {"ip": client_ip(request), "session_began": getattr(actor, "last_login", None)}

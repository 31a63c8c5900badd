"""Every change in emergency website backups: codes sent to the preset contacts (QUALITY
Q1-Q6), their verification into a narrow emergency session, the session's end, and the
manager's unlock. Backup jobs are in backups/jobs.py.

Each transition locks the website (or the challenge) row, checks, writes, records its audit
event and queues its alerts in one transaction, so the limits hold under concurrency.

Who manages a website is guarded like its contacts (backups/custody.py): a manager awaiting a
second administrator's confirmation has no manager's powers here, and the website sends no code."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.client_ip import client_ip
from audit.alerts import alert, nudge_relay
from audit.catalogue import EventKind, Outcome
from audit.services import Anonymous, record
from backups import throttle
from backups.models import EmergencyChallenge, EmergencySession, Website
from review.services import open_for_emergency_session

CODE_DIGITS = 8
CODE_VALIDITY = timedelta(minutes=10)
WRONG_TRIES_PER_CODE = 5
FAILURES_TO_LOCK = 20
SENDS_PER_15_MINUTES = 3
SENDS_PER_DAY = 10


@dataclass(frozen=True)
class Contact:
    """A preset verification contact, in the shape alert() expects of a recipient."""

    email: str
    mobile: str


def normalize_address(address: str) -> str:
    """"https://Example.org/" and "example.org" are the same website."""
    address = (address or "").strip().lower()
    for prefix in ("https://", "http://"):
        address = address.removeprefix(prefix)
    return address.split("/", 1)[0].removeprefix("www.")[:253]


def code_mac(nonce: str, website_id: int, code: str) -> str:
    """The only form a code is stored in: keyed, and bound to its challenge and website."""
    message = f"emergency-code:{nonce}:{website_id}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def contacts_of(website: Website, at) -> list[Contact]:
    """Who receives codes: the preset contacts, unless they changed less than 24 hours ago
    and no second administrator approved the change (the previous ones were notified)."""
    if website.contacts_hold_until and website.contacts_hold_until > at:
        return []
    return [Contact(website.verification_email, website.verification_mobile)]


def everyone_told(website: Website) -> list:
    """The manager and the owner's contacts: told of every step."""
    return [website.manager, Contact(website.verification_email, website.verification_mobile)]


def send_code(address: str, *, request: HttpRequest | None = None) -> str:
    """Send a new code to the contacts of the website at `address`, if there is one that takes
    emergency requests and its limits allow. Always returns a challenge nonce, a decoy when
    nothing was sent, so the page cannot tell a known address from an unknown one (Q6).

    While a drill's code waits to be used, its nonce is returned and no new code is sent: the
    owner completes the drill on this page with the code the DRILL message carried."""
    address = normalize_address(address)
    with transaction.atomic():
        website = (Website.objects.select_for_update(of=("self",)).select_related("manager")
                   .filter(address=address, emergency_enabled=True).first())
        if website is None:
            return _rehearse_send(address, request)
        drill = _waiting_drill(website, timezone.now())
        if drill is not None:
            return drill.nonce
        with transaction.atomic():
            nonce = _issue_code(website, actor=Anonymous("website owner"), request=request)
    return nonce or secrets.token_urlsafe(32)


class _Rehearsal(Exception):
    """Rolls back the decoy send of an unknown address."""


def _rehearse_send(address: str, request) -> str:
    """The same statements as a real send, on a website that does not exist, then rolled back:
    an unknown address costs what a known one does, so timing does not tell them apart (Q6).
    Foreign keys are checked at commit, which the rolled-back rows never reach."""
    from accounts.models import User

    decoy = Website(pk=0, address=address, manager=User(username="-", email="-@invalid"),
                    verification_email="-@invalid", verification_mobile="+10000000000")
    pending = transaction.get_connection().run_on_commit
    try:
        with transaction.atomic():
            before = len(pending)
            _waiting_drill(decoy, timezone.now())
            _issue_code(decoy, actor=Anonymous("website owner"), request=request)
            # The relay nudges a real send queues after commit go with the savepoint: keep them.
            nudges = [entry[1] for entry in pending[before:] if entry[1] is nudge_relay]
            raise _Rehearsal
    except _Rehearsal:
        pass
    for nudge in nudges:
        transaction.on_commit(nudge)
    return secrets.token_urlsafe(32)


def _waiting_drill(website: Website, now) -> EmergencyChallenge | None:
    return website.challenges.filter(is_drill=True, used_at=None, expires_at__gt=now,
                                     wrong_tries__lt=WRONG_TRIES_PER_CODE).first()


DRILL_WINDOW = timedelta(minutes=15)


def may_act_as_manager(website: Website, user) -> bool:
    """The confirmed manager, or an administrator who is not a manager awaiting confirmation."""
    if user.pk == website.manager_id:
        return website.manager_confirmed
    return user.is_superuser and user.pk != website.pending_manager_id


def start_drill(website: Website, *, actor, request: HttpRequest | None = None) -> str:
    """The manager rehearses the emergency path: a code goes to the preset contacts, labelled
    DRILL, and the session it opens lasts 15 minutes and opens a drill review. The owner
    completes it on /emergency/ (send_code hands out the waiting drill's challenge). Returns
    the challenge's nonce; "" when the limits refused it."""
    if not website.manager_confirmed:
        raise PermissionError("The website's manager awaits a second administrator's "
                              "confirmation: no drill before that.")
    if not may_act_as_manager(website, actor):
        raise PermissionError("Only the website's manager starts its emergency drill.")
    if not website.emergency_enabled:
        raise PermissionError("The emergency flow of this website is switched off.")
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        return _issue_code(website, actor=actor, request=request, drill=True)


def _issue_code(website: Website, *, actor, request, drill: bool = False) -> str:
    """Create a challenge and queue its code to the contacts; "" when refused (audited, one
    refusal per client address and minute). The caller holds the website's row lock."""
    now = timezone.now()
    why = _why_no_code(website, now)
    if why:
        if throttle.first_this_minute(request, "code-refused"):
            record(EventKind.EMERGENCY_CODE_REFUSED, actor=actor, target=website,
                   outcome=Outcome.DENIED, reason=why, request=request,
                   data={"drill": True} if drill else None)
        return ""
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    nonce = secrets.token_urlsafe(32)
    challenge = EmergencyChallenge.objects.create(
        website=website, nonce=nonce, code_mac=code_mac(nonce, website.pk, code),
        created_at=now, expires_at=now + CODE_VALIDITY, is_drill=drill,
        ip=client_ip(request) if request is not None else "")
    event = record(EventKind.EMERGENCY_CODE_SENT, actor=actor, target=website,
                   request=request, data={"challenge": challenge.pk,
                                          **({"drill": True} if drill else {})})
    alert(event, users=contacts_of(website, now), channels=["email", "sms"],
          template="one_time_code", sensitive=True,
          context={"code": code, "purpose": f"the emergency page of {website.address}",
                   "valid_minutes": int(CODE_VALIDITY.total_seconds() // 60),
                   "drill": drill})
    alert(event, users=[website.manager], channels=["email", "sms"], template="event")
    return nonce


def _why_no_code(website: Website, now) -> str:
    if not website.manager_confirmed:
        return "the website's manager awaits a second administrator's confirmation"
    if website.locked_at:
        return "the emergency flow is locked after repeated failures"
    if not contacts_of(website, now):
        return "the contacts changed less than 24 hours ago and are on hold"
    recent = website.challenges.filter(created_at__gt=now - timedelta(minutes=15)).count()
    if recent >= SENDS_PER_15_MINUTES:
        return f"{SENDS_PER_15_MINUTES} codes in 15 minutes already"
    if website.challenges.filter(created_at__gt=now - timedelta(days=1)).count() >= SENDS_PER_DAY:
        return f"{SENDS_PER_DAY} codes today already"
    return ""


class VerificationFailed(Exception):
    """One answer for every failure: wrong, used, expired, exhausted, locked, unknown."""


def verify_code(nonce: str, code: str, *,
                request: HttpRequest | None = None) -> EmergencySession:
    """Open an emergency session for the code's website. Single use under concurrency (the
    challenge row is locked); 5 wrong tries kill the code; the website's failure count
    survives new codes and locks the flow at 20."""
    code = "".join((code or "").split())
    challenge = EmergencyChallenge.objects.filter(nonce=nonce or "-").first()
    if challenge is None:
        raise VerificationFailed
    failure = None
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=challenge.website_id)
        challenge = EmergencyChallenge.objects.select_for_update().get(pk=challenge.pk)
        now = timezone.now()
        if website.locked_at:
            failure = "the website's emergency flow is locked"
        elif not (website.emergency_enabled and website.manager_confirmed):
            failure = "the website's emergency access is switched off"
        elif challenge.used_at is not None:
            failure = "the code was already used"
        elif challenge.expires_at <= now:
            failure = "the code expired"
        elif challenge.wrong_tries >= WRONG_TRIES_PER_CODE:
            failure = "the code had too many wrong tries"
        elif not (len(code) == CODE_DIGITS and code.isdigit() and hmac.compare_digest(
                code_mac(challenge.nonce, website.pk, code), challenge.code_mac)):
            failure = "a wrong code"
            challenge.wrong_tries += 1
            challenge.save(update_fields=["wrong_tries"])
        if failure:
            _count_failure(website, failure, request)
        else:
            challenge.used_at = now
            challenge.save(update_fields=["used_at"])
            website.consecutive_failures = 0
            website.save(update_fields=["consecutive_failures"])
            window = website.emergency_window
            if challenge.is_drill:
                window = min(window, DRILL_WINDOW)
            session = EmergencySession.objects.create(
                website=website, challenge=challenge, started_at=now, expires_at=now + window,
                ip=client_ip(request) if request is not None else "",
                is_drill=challenge.is_drill)
            review = open_for_emergency_session(session)
            event = record(EventKind.EMERGENCY_VERIFIED, actor=session, target=website,
                           request=request,
                           data={"session": session.pk, "review": review.pk,
                                 "expires_at": session.expires_at.isoformat(),
                                 **({"drill": True} if session.is_drill else {})})
            alert(event, users=everyone_told(website), channels=["email", "sms"],
                  template="event")
    if failure:
        raise VerificationFailed
    return session


def _count_failure(website: Website, why: str, request) -> None:
    website.consecutive_failures += 1
    fields = ["consecutive_failures"]
    if website.consecutive_failures >= FAILURES_TO_LOCK and not website.locked_at:
        website.locked_at = timezone.now()
        fields.append("locked_at")
    website.save(update_fields=fields)
    if throttle.first_this_minute(request, "verify-failed"):
        record(EventKind.EMERGENCY_VERIFY_FAILED, actor=Anonymous("website owner"),
               target=website, outcome=Outcome.DENIED, reason=why, request=request,
               data={"consecutive_failures": website.consecutive_failures})
    if "locked_at" in fields:
        event = record(EventKind.EMERGENCY_LOCKED, actor=None, target=website,
                       outcome=Outcome.DENIED,
                       data={"consecutive_failures": website.consecutive_failures})
        alert(event, users=[website.manager], template="event")
        _end_open_sessions(website, actor=None, request=request,
                           reason="the emergency flow locked after repeated failures")


@transaction.atomic
def unlock(website: Website, *, actor, request: HttpRequest | None = None) -> None:
    """The manager (or an administrator) reopens a locked emergency flow; a manager awaiting
    confirmation cannot."""
    website = Website.objects.select_for_update().get(pk=website.pk)
    if website.locked_at is None:
        return
    if not may_act_as_manager(website, actor):
        raise PermissionError("Only the website's confirmed manager or another administrator "
                              "unlocks its emergency flow.")
    website.locked_at = None
    website.consecutive_failures = 0
    website.save(update_fields=["locked_at", "consecutive_failures"])
    record(EventKind.EMERGENCY_UNLOCKED, actor=actor, target=website, request=request)


def open_session(session_id, at=None) -> EmergencySession | None:
    """The emergency session a browser holds, if it is still open and its website still takes
    emergency access (checked on every request: switching it off ends the session)."""
    if not isinstance(session_id, int):
        return None
    session = EmergencySession.objects.select_related("website").filter(pk=session_id).first()
    if session is None:
        return None
    at = at or timezone.now()
    website = session.website
    why_not = ("the window ended" if not session.is_open(at)
               else "emergency access is switched off" if not website.emergency_enabled
               else "the emergency flow is locked" if website.locked_at else "")
    if why_not:
        end_session(session, reason=why_not)
        return None
    return session


def end_session(session: EmergencySession, *, reason: str,
                request: HttpRequest | None = None) -> None:
    """Idempotent: the first end is recorded (the window ended, or the owner left)."""
    with transaction.atomic():
        session = EmergencySession.objects.select_for_update().select_related("website").get(
            pk=session.pk)
        _close_session(session, actor=session, reason=reason, request=request)


def end_emergency_sessions(website: Website, *, actor, reason: str,
                           request: HttpRequest | None = None) -> int:
    """A defender ends every open emergency session of `website` at once: each end is audited
    and the manager and contacts told. Returns how many were open."""
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        return _end_open_sessions(website, actor=actor, reason=reason, request=request)


def _end_open_sessions(website: Website, *, actor, reason: str, request) -> int:
    sessions = list(website.sessions.select_for_update().filter(ended_at=None))
    for session in sessions:
        session.website = website
        _close_session(session, actor=actor, reason=reason, request=request)
    return len(sessions)


def _close_session(session: EmergencySession, *, actor, reason: str, request) -> None:
    if session.ended_at is not None:
        return
    session.ended_at = min(timezone.now(), session.expires_at)
    session.save(update_fields=["ended_at"])
    event = record(EventKind.EMERGENCY_SESSION_ENDED, actor=actor, target=session.website,
                   reason=reason, request=request,
                   data={"session": session.pk, **({"drill": True} if session.is_drill else {})})
    alert(event, users=everyone_told(session.website), channels=["email", "sms"],
          template="event")


CONTACT_HOLD = timedelta(hours=24)


def change_contacts(website: Website, *, email: str, mobile: str, actor,
                    request: HttpRequest | None = None) -> None:
    """The confirmed manager (after a fresh code, checked by the caller) sets new verification
    contacts. Both the previous and the new contacts are told; the new ones, first contacts
    included, receive no code for 24 hours unless a second administrator approves them."""
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        previous = Contact(website.verification_email, website.verification_mobile)
        if (previous.email, previous.mobile) == (email, mobile):
            return
        if actor.pk != website.manager_id or not website.manager_confirmed:
            raise PermissionError("Only the website's confirmed manager sets its contacts.")
        now = timezone.now()
        website.verification_email, website.verification_mobile = email, mobile
        website.contacts_changed_at, website.contacts_changed_by = now, actor
        website.contacts_hold_until = now + CONTACT_HOLD
        website.save(update_fields=["verification_email", "verification_mobile",
                                    "contacts_changed_at", "contacts_changed_by",
                                    "contacts_hold_until"])
        event = record(EventKind.CONTACTS_CHANGED, actor=actor, target=website, request=request,
                       data={"email_changed": previous.email != email,
                             "mobile_changed": previous.mobile != mobile,
                             "hold_until": website.contacts_hold_until.isoformat()})
        alert(event, users=[previous, Contact(email, mobile), website.manager],
              channels=["email", "sms"], template="event")


def approve_contacts(website: Website, *, actor, request: HttpRequest | None = None) -> None:
    """A second administrator releases new contacts before the 24 hours are over."""
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        if not website.contacts_hold_until or website.contacts_hold_until <= timezone.now():
            return
        if not actor.is_superuser or actor.pk == website.contacts_changed_by_id:
            raise PermissionError("A second administrator, not the one who changed the "
                                  "contacts, must approve.")
        website.contacts_hold_until = None
        website.save(update_fields=["contacts_hold_until"])
        record(EventKind.CONTACTS_APPROVED, actor=actor, target=website, request=request)


def refuse_throttled(request: HttpRequest) -> None:
    """Record that the emergency page refused a client address (429), once per minute."""
    if not throttle.first_this_minute(request, "throttled"):
        return
    with transaction.atomic():
        record(EventKind.EMERGENCY_THROTTLED, actor=Anonymous("website owner"),
               outcome=Outcome.DENIED, request=request, data={"path": request.path[:200]})

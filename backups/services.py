"""Every change in emergency website backups: codes sent to the preset contacts (QUALITY
Q1-Q6), their verification into a narrow emergency session, the session's end, and the
manager's unlock. Backup jobs are in backups/jobs.py.

Each transition locks the website (or the challenge) row, checks, writes, records its audit
event and queues its alerts in one transaction, so the limits hold under concurrency."""

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
from audit.alerts import alert
from audit.catalogue import EventKind, Outcome
from audit.services import Anonymous, record
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
    nothing was sent, so the page cannot tell a known address from an unknown one (Q6)."""
    decoy = secrets.token_urlsafe(32)
    website = Website.objects.filter(address=normalize_address(address),
                                     emergency_enabled=True).first()
    if website is None:
        return decoy
    return _send(website, actor=Anonymous("website owner"), request=request) or decoy


DRILL_WINDOW = timedelta(minutes=15)


def start_drill(website: Website, *, actor, request: HttpRequest | None = None) -> str:
    """The manager rehearses the emergency path: a code goes to the preset contacts, labelled
    DRILL, and the session it opens lasts 15 minutes and opens a drill review. Returns the
    nonce for /emergency/verify/; "" when the limits refused it."""
    if not (actor.is_superuser or actor.pk == website.manager_id):
        raise PermissionError("Only the website's manager starts its emergency drill.")
    if not website.emergency_enabled:
        raise PermissionError("The emergency flow of this website is switched off.")
    return _send(website, actor=actor, request=request, drill=True)


def _send(website: Website, *, actor, request, drill: bool = False) -> str:
    ip = client_ip(request) if request is not None else ""
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        now = timezone.now()
        why = _why_no_code(website, now)
        if why:
            record(EventKind.EMERGENCY_CODE_REFUSED, actor=actor, target=website,
                   outcome=Outcome.DENIED, reason=why, request=request,
                   data={"drill": True} if drill else None)
            return ""
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        nonce = secrets.token_urlsafe(32)
        challenge = EmergencyChallenge.objects.create(
            website=website, nonce=nonce, code_mac=code_mac(nonce, website.pk, code),
            created_at=now, expires_at=now + CODE_VALIDITY, ip=ip, is_drill=drill)
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
    record(EventKind.EMERGENCY_VERIFY_FAILED, actor=Anonymous("website owner"), target=website,
           outcome=Outcome.DENIED, reason=why, request=request,
           data={"consecutive_failures": website.consecutive_failures})
    if "locked_at" in fields:
        event = record(EventKind.EMERGENCY_LOCKED, actor=None, target=website,
                       outcome=Outcome.DENIED,
                       data={"consecutive_failures": website.consecutive_failures})
        alert(event, users=[website.manager], template="event")


@transaction.atomic
def unlock(website: Website, *, actor, request: HttpRequest | None = None) -> None:
    """The manager (or an administrator) reopens a locked emergency flow."""
    website = Website.objects.select_for_update().get(pk=website.pk)
    if website.locked_at is None:
        return
    website.locked_at = None
    website.consecutive_failures = 0
    website.save(update_fields=["locked_at", "consecutive_failures"])
    record(EventKind.EMERGENCY_UNLOCKED, actor=actor, target=website, request=request)


def open_session(session_id, at=None) -> EmergencySession | None:
    """The emergency session a browser holds, if it is still open."""
    if not isinstance(session_id, int):
        return None
    session = EmergencySession.objects.select_related("website").filter(pk=session_id).first()
    if session is None:
        return None
    at = at or timezone.now()
    if not session.is_open(at):
        end_session(session, reason="the window ended")
        return None
    return session


def end_session(session: EmergencySession, *, reason: str,
                request: HttpRequest | None = None) -> None:
    """Idempotent: the first end is recorded (the window ended, or the owner left)."""
    with transaction.atomic():
        session = EmergencySession.objects.select_for_update().select_related("website").get(
            pk=session.pk)
        if session.ended_at is not None:
            return
        session.ended_at = min(timezone.now(), session.expires_at)
        session.save(update_fields=["ended_at"])
        event = record(EventKind.EMERGENCY_SESSION_ENDED, actor=session, target=session.website,
                       reason=reason, request=request)
        alert(event, users=everyone_told(session.website), channels=["email", "sms"],
              template="event")


CONTACT_HOLD = timedelta(hours=24)


def change_contacts(website: Website, *, email: str, mobile: str, actor,
                    request: HttpRequest | None = None) -> None:
    """The manager (after a fresh code, checked by the caller) sets new verification contacts.
    Both the previous and the new contacts are told; the new ones receive no code for 24
    hours unless a second administrator approves the change."""
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        previous = Contact(website.verification_email, website.verification_mobile)
        if (previous.email, previous.mobile) == (email, mobile):
            return
        now = timezone.now()
        had_contacts = bool(previous.email or previous.mobile)
        website.verification_email, website.verification_mobile = email, mobile
        website.contacts_changed_at, website.contacts_changed_by = now, actor
        website.contacts_hold_until = now + CONTACT_HOLD if had_contacts else None
        website.save(update_fields=["verification_email", "verification_mobile",
                                    "contacts_changed_at", "contacts_changed_by",
                                    "contacts_hold_until"])
        event = record(EventKind.CONTACTS_CHANGED, actor=actor, target=website, request=request,
                       data={"email_changed": previous.email != email,
                             "mobile_changed": previous.mobile != mobile,
                             "hold_until": website.contacts_hold_until.isoformat()
                             if website.contacts_hold_until else None})
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

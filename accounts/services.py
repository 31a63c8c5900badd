"""Sign-in state changes: authenticator enrolment, backup codes, second-factor verification,
session expiry. Each records its audit event in the same transaction."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth import authenticate, logout
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.models import Device
from django_otp_webauthn.models import WebAuthnCredential

from accounts.models import (
    BackupCode,
    BackupCodeDevice,
    TOTPDevice,
    User,
    hash_backup_code,
    new_backup_code,
)
from audit.alerts import alert
from audit.catalogue import EventKind, Outcome
from audit.models import Delivery
from audit.services import record

# A change to someone's second factors is told to them where an intruder cannot answer for
# them: their own email and phone.
OWNER_CHANNELS = (Delivery.Channel.EMAIL, Delivery.Channel.SMS)
# How recent a verified second factor must be for a step-up (the risk rules ask for one).
STEP_UP_WINDOW = timedelta(minutes=5)


@dataclass
class SecondFactorThrottled(Exception):
    """Too many wrong codes in a row; verification is refused until `locked_until`."""

    locked_until: datetime | None


def has_confirmed_device(user: User) -> bool:
    """Whether the user has ever completed two-factor enrolment. Such a user must verify before
    changing devices, even with every backup code used: a password alone never enrols again."""
    return (
        TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        or BackupCodeDevice.objects.filter(user=user, confirmed=True).exists()
        or WebAuthnCredential.objects.filter(user=user, confirmed=True).exists()
    )


def start_totp_enrolment(user: User) -> TOTPDevice:
    """The user's pending (unconfirmed) authenticator, created on first call. Reusing it means a
    reload of the enrolment page does not invalidate a QR code already scanned."""
    pending = (TOTPDevice.objects.filter(user=user, confirmed=False)
               .order_by("-pk").first())
    if pending:
        return pending
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


class SecondFactorChangeRefused(Exception):
    """The account password or a second factor verified in the last 5 minutes was missing or
    wrong: nothing changed. The message says which, for the person at the keyboard."""


def check_change_proof(user: User, *, change: str, password: str,
                       stepped_up_at: datetime | None, request: HttpRequest | None) -> None:
    """Refuse a change to `user`'s second factors unless `password` is theirs and a second
    factor was verified within STEP_UP_WINDOW (`stepped_up_at`, see note_step_up). A refusal
    is audited in its own transaction, so it stays recorded."""
    if not _password_matches(user, password, request):
        why = "The password is not right."
    elif stepped_up_at is None or timezone.now() - stepped_up_at > STEP_UP_WINDOW:
        why = ("Enter a current code from your authenticator app or an unused backup code: "
               "none was verified in the last 5 minutes.")
    else:
        return
    with transaction.atomic():
        record(EventKind.SECOND_FACTOR_CHANGE_REFUSED, actor=user, target=user, request=request,
               outcome=Outcome.DENIED, data={"change": change, "why": why})
    raise SecondFactorChangeRefused(why)


def _password_matches(user: User, password: str, request: HttpRequest | None) -> bool:
    if not password:
        return False
    if request is None:
        return user.check_password(password)
    # Through authenticate() so that django-axes counts and locks out repeated guesses here
    # exactly as on the sign-in page.
    authenticated = authenticate(request, username=user.get_username(), password=password)
    return authenticated is not None and authenticated.pk == user.pk


def confirm_totp_device(
    device: TOTPDevice, token: str, *, actor: User, password: str = "",
    stepped_up_at: datetime | None = None, request: HttpRequest | None = None,
) -> bool:
    """Confirm a pending authenticator with a code from it; it replaces any earlier one.

    A user who already has a confirmed second factor must prove the password and a fresh
    factor (check_change_proof, raising SecondFactorChangeRefused); the replacement is audited
    and the user is alerted by email and SMS. A first enrolment needs only the code. Returns
    False (and counts a throttled failure) when the code does not match.
    """
    replacing = has_confirmed_device(actor)
    if replacing:
        check_change_proof(actor, change="authenticator", password=password,
                           stepped_up_at=stepped_up_at, request=request)
    return _confirm_totp_device(device, token, actor=actor, replacing=replacing, request=request)


@transaction.atomic
def _confirm_totp_device(device: TOTPDevice, token: str, *, actor: User,
                         replacing: bool, request: HttpRequest | None) -> bool:
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=actor)
    if device.confirmed:
        return True
    if not device.verify_token(token):
        return False
    others = TOTPDevice.objects.filter(user=actor).exclude(pk=device.pk)
    replaced = others.delete()[0]
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    kind = EventKind.AUTHENTICATOR_REPLACED if replacing else EventKind.DEVICE_ENROLLED
    event = record(kind, actor=actor, target=actor, request=request,
                   data={"device": "totp", "replaced": replaced})
    if replacing:
        alert(event, users=[actor], channels=OWNER_CHANNELS, template="second_factor_changed")
    return True


@transaction.atomic
def issue_backup_codes(
    user: User, *, actor: User | None, request: HttpRequest | None = None
) -> list[str]:
    """Give `user` a fresh set of backup codes without further proof: the first set at
    enrolment, or by the system (the demo). A user replacing their own set goes through
    regenerate_backup_codes. The plaintext is returned once and never stored."""
    codes = _replace_backup_codes(user)
    record(
        EventKind.BACKUP_CODES_ISSUED, actor=actor, target=user, request=request,
        data={"count": len(codes)},
    )
    return codes


def regenerate_backup_codes(
    user: User, *, password: str, stepped_up_at: datetime | None,
    request: HttpRequest | None = None,
) -> list[str]:
    """Replace the user's backup codes, once they prove the password and a fresh second
    factor (check_change_proof). Audited; the user is alerted by email and SMS."""
    check_change_proof(user, change="backup_codes", password=password,
                       stepped_up_at=stepped_up_at, request=request)
    with transaction.atomic():
        codes = _replace_backup_codes(user)
        event = record(EventKind.BACKUP_CODES_REGENERATED, actor=user, target=user,
                       request=request, data={"count": len(codes)})
        alert(event, users=[user], channels=OWNER_CHANNELS, template="second_factor_changed")
    return codes


def _replace_backup_codes(user: User) -> list[str]:
    device, _ = BackupCodeDevice.objects.select_for_update().get_or_create(
        user=user, defaults={"name": "Backup codes", "confirmed": True}
    )
    device.codes.all().delete()
    codes = [new_backup_code() for _ in range(10)]
    for code in codes:
        BackupCode.objects.create(device=device, digest=hash_backup_code(code))
    return codes


@transaction.atomic
def remove_second_factor(device: TOTPDevice | BackupCodeDevice, *, actor: User,
                         request: HttpRequest | None = None) -> bool:
    """Remove a user's authenticator app or backup code set (a lost phone, a leaked sheet).

    The caller has checked the actor's own fresh one-time code (the admin asks for it).
    Audited; the user is alerted by email and SMS, since once no confirmed factor is left the
    next enrolment asks only for the password. Returns False if the device was already gone.
    """
    model = type(device)
    device = model.objects.select_for_update().filter(pk=device.pk).first()
    if device is None:
        return False
    user, kind = device.user, "totp" if model is TOTPDevice else "backup_codes"
    device.delete()
    event = record(EventKind.SECOND_FACTOR_REMOVED, actor=actor, target=user, request=request,
                   data={"device": kind, "confirmed": device.confirmed})
    alert(event, users=[user], channels=OWNER_CHANNELS, template="second_factor_changed")
    return True


def verify_second_factor(
    user: User, code: str, *, request: HttpRequest | None = None
) -> Device | None:
    """Check `code` against the user's authenticator (6 digits) or backup codes (anything else).

    Returns the device that accepted it, None for a wrong code, and raises SecondFactorThrottled
    while the device's back-off after repeated failures is running. Failures and refusals are
    audited in their own transaction.
    """
    compact = "".join(code.split())
    is_totp = compact.isdigit() and len(compact) == 6
    model = TOTPDevice if is_totp else BackupCodeDevice
    method = "totp" if model is TOTPDevice else "backup_code"
    for device_pk in model.objects.filter(user=user, confirmed=True).values_list("pk", flat=True):
        with transaction.atomic():
            device = model.objects.select_for_update().get(pk=device_pk)
            allowed, info = device.verify_is_allowed()
            if allowed and device.verify_token(compact):
                record(EventKind.OTP_VERIFIED, actor=user, target=user, request=request,
                       data={"method": method})
                return device
        if not allowed:
            record(EventKind.OTP_THROTTLED, actor=user, target=user, request=request,
                   outcome=Outcome.DENIED, data={"method": method})
            raise SecondFactorThrottled((info or {}).get("locked_until"))
    record(EventKind.OTP_FAILED, actor=user, target=user, request=request,
           outcome=Outcome.FAILURE, data={"method": method})
    return None


def expire_session(request: HttpRequest, *, limit: str) -> None:
    """End a session that passed its idle or absolute limit (`limit` names which)."""
    user = request.user
    with transaction.atomic():
        record(EventKind.SESSION_EXPIRED, actor=user, target=user, request=request,
               data={"limit": limit})
    logout(request)


STEP_UP_SESSION_KEY = "step_up_at"


def verified_by(request: HttpRequest, device, *, step_up: bool = True) -> None:
    """The session is verified by `device` (a code just checked, or the identity provider's
    asserted second factor): a new session key at this step up in privilege defeats session
    fixation, and, when the factor was proven just now, the step-up counts from now."""
    from django_otp import login as otp_login

    otp_login(request, device)
    request.session.cycle_key()
    if step_up:
        note_step_up(request)


def note_step_up(request: HttpRequest) -> None:
    """A one-time code was just verified in this session (at sign-in or on a form that asked
    for one): risk rules that want a step-up accept it for the next 5 minutes."""
    request.session[STEP_UP_SESSION_KEY] = timezone.now().timestamp()


def stepped_up_at(request: HttpRequest) -> datetime | None:
    stamp = request.session.get(STEP_UP_SESSION_KEY)
    return datetime.fromtimestamp(stamp, tz=UTC) if isinstance(stamp, int | float) else None


# --- Passkeys (django-otp-webauthn) -----------------------------------------------------------

# Proving the password and a fresh factor on the account page opens a short window in which
# this session may register one passkey; the browser ceremony happens after that proof.
PASSKEY_PERMIT_SESSION_KEY = "passkey_registration_allowed_at"


def allow_passkey_registration(request: HttpRequest) -> None:
    """Called once check_change_proof passed for change="passkey"."""
    request.session[PASSKEY_PERMIT_SESSION_KEY] = timezone.now().timestamp()


def passkey_registration_allowed(request: HttpRequest) -> bool:
    stamp = request.session.get(PASSKEY_PERMIT_SESSION_KEY)
    if not isinstance(stamp, int | float):
        return False
    return timezone.now() - datetime.fromtimestamp(stamp, tz=UTC) <= STEP_UP_WINDOW


def passkeys_of(user: User):
    return WebAuthnCredential.objects.filter(user=user, confirmed=True).order_by("created_at")


def record_passkey_added(request: HttpRequest, credential: WebAuthnCredential) -> None:
    """In the registration's transaction: the permit is used up, the addition audited, and the
    owner told on their own channels (someone with their password and a factor could add one)."""
    request.session.pop(PASSKEY_PERMIT_SESSION_KEY, None)
    if not credential.name:
        # Browsers say nothing about the authenticator; a number tells two passkeys apart in
        # the list, the alert and the audit trail.
        credential.name = f"Passkey {passkeys_of(credential.user).count()}"
        credential.save(update_fields=["name"])
    event = record(EventKind.PASSKEY_ADDED, actor=credential.user, target=credential.user,
                   request=request, data={"device": "passkey", "name": credential.name,
                                          "passkeys": passkeys_of(credential.user).count()})
    alert(event, users=[credential.user], channels=OWNER_CHANNELS, template="passkey_changed")


@transaction.atomic
def remove_passkey(credential: WebAuthnCredential, *, actor: User,
                   request: HttpRequest | None = None) -> bool:
    """Remove a passkey (a lost laptop or key). The caller has checked the proof (the owner's
    password and a fresh factor). Refused when it is the account's last second factor: a
    password alone must never be enough afterwards. False if it was already gone."""
    credential = WebAuthnCredential.objects.select_for_update().filter(pk=credential.pk).first()
    if credential is None:
        return False
    user = credential.user
    others = (TOTPDevice.objects.filter(user=user, confirmed=True).exists()
              or BackupCodeDevice.objects.filter(user=user, confirmed=True,
                                                 codes__used_at=None).exists()
              or passkeys_of(user).exclude(pk=credential.pk).exists())
    if not others:
        raise SecondFactorChangeRefused(
            "This passkey is your only second factor: set up an authenticator app or another "
            "passkey first.")
    name = credential.name
    credential.delete()
    event = record(EventKind.PASSKEY_REMOVED, actor=actor, target=user, request=request,
                   data={"device": "passkey", "name": name})
    alert(event, users=[user], channels=OWNER_CHANNELS, template="passkey_changed")
    return True


def passkey_verified(request: HttpRequest, credential: WebAuthnCredential) -> None:
    """A passkey ceremony just succeeded for the signed-in user: audited like a typed code,
    and the session verified by it, with a new key and a fresh step-up."""
    with transaction.atomic():
        record(EventKind.OTP_VERIFIED, actor=credential.user, target=credential.user,
               request=request, data={"method": "passkey"})
    verified_by(request, credential)

"""Sign-in state changes: authenticator enrolment, backup codes, second-factor verification,
session expiry. Each records its audit event in the same transaction."""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import logout
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import BackupCode, BackupCodeDevice, User, hash_backup_code, new_backup_code
from audit.catalogue import EventKind, Outcome
from audit.services import record


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
    )


def start_totp_enrolment(user: User) -> TOTPDevice:
    """The user's pending (unconfirmed) authenticator, created on first call. Reusing it means a
    reload of the enrolment page does not invalidate a QR code already scanned."""
    pending = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if pending:
        return pending
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


@transaction.atomic
def confirm_totp_device(
    device: TOTPDevice, token: str, *, actor: User, request: HttpRequest | None = None
) -> bool:
    """Confirm a pending authenticator with a code from it; it replaces any earlier one.

    Returns False (and counts a throttled failure) when the code does not match.
    """
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=actor)
    if device.confirmed:
        return True
    if not device.verify_token(token):
        return False
    replaced = TOTPDevice.objects.filter(user=actor).exclude(pk=device.pk).delete()[0]
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    record(
        EventKind.DEVICE_ENROLLED, actor=actor, target=actor, request=request,
        data={"device": "totp", "replaced": replaced},
    )
    return True


@transaction.atomic
def regenerate_backup_codes(
    user: User, *, actor: User | None, request: HttpRequest | None = None
) -> list[str]:
    """Replace the user's backup codes with a fresh set; the plaintext is returned once and
    never stored."""
    device, _ = BackupCodeDevice.objects.get_or_create(
        user=user, defaults={"name": "Backup codes", "confirmed": True}
    )
    device.codes.all().delete()
    codes = [new_backup_code() for _ in range(10)]
    for code in codes:
        BackupCode.objects.create(device=device, digest=hash_backup_code(code))
    record(
        EventKind.BACKUP_CODES_ISSUED, actor=actor, target=user, request=request,
        data={"count": len(codes)},
    )
    return codes


def verify_second_factor(
    user: User, code: str, *, request: HttpRequest | None = None
) -> Device | None:
    """Check `code` against the user's authenticator (6 digits) or backup codes (anything else).

    Returns the device that accepted it, None for a wrong code, and raises SecondFactorThrottled
    while the device's back-off after repeated failures is running. Failures and refusals are
    audited in their own transaction.
    """
    compact = "".join(code.split())
    model = TOTPDevice if compact.isdigit() and len(compact) == 6 else BackupCodeDevice
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


def note_step_up(request: HttpRequest) -> None:
    """A one-time code was just verified in this session (at sign-in or on a form that asked
    for one): risk rules that want a step-up accept it for the next 5 minutes."""
    request.session[STEP_UP_SESSION_KEY] = timezone.now().timestamp()


def stepped_up_at(request: HttpRequest) -> datetime | None:
    stamp = request.session.get(STEP_UP_SESSION_KEY)
    return datetime.fromtimestamp(stamp, tz=UTC) if isinstance(stamp, int | float) else None

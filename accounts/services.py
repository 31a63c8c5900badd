"""Sign-in state changes: authenticator enrolment, backup codes, second-factor verification."""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import BackupCode, BackupCodeDevice, User, hash_backup_code, new_backup_code


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
def confirm_totp_device(device: TOTPDevice, token: str, *, actor: User) -> bool:
    """Confirm a pending authenticator with a code from it; it replaces any earlier one.

    Returns False (and counts a throttled failure) when the code does not match.
    """
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=actor)
    if device.confirmed:
        return True
    if not device.verify_token(token):
        return False
    TOTPDevice.objects.filter(user=actor).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return True


@transaction.atomic
def regenerate_backup_codes(user: User, *, actor: User | None) -> list[str]:
    """Replace the user's backup codes with a fresh set; the plaintext is returned once and
    never stored."""
    device, _ = BackupCodeDevice.objects.get_or_create(
        user=user, defaults={"name": "Backup codes", "confirmed": True}
    )
    device.codes.all().delete()
    codes = [new_backup_code() for _ in range(10)]
    for code in codes:
        BackupCode.objects.create(device=device, digest=hash_backup_code(code))
    return codes


def verify_second_factor(user: User, code: str) -> Device | None:
    """Check `code` against the user's authenticator (6 digits) or backup codes (anything else).

    Returns the device that accepted it, None for a wrong code, and raises SecondFactorThrottled
    while the device's back-off after repeated failures is running.
    """
    compact = "".join(code.split())
    model = TOTPDevice if compact.isdigit() and len(compact) == 6 else BackupCodeDevice
    devices = model.objects.filter(user=user, confirmed=True)
    for device_pk in devices.values_list("pk", flat=True):
        with transaction.atomic():
            device = model.objects.select_for_update().get(pk=device_pk)
            allowed, info = device.verify_is_allowed()
            if not allowed:
                raise SecondFactorThrottled((info or {}).get("locked_until"))
            if device.verify_token(compact):
                return device
    return None

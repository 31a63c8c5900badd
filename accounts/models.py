import hmac
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp.models import Device, ThrottlingMixin

from accounts.phone import validate_e164
from audit.history import ConfigurationHistory

SECURITY_REVIEWERS_GROUP = "Security reviewers"


class BreakglassUserManager(UserManager):
    def security_reviewers(self):
        return self.filter(is_active=True, groups__name=SECURITY_REVIEWERS_GROUP).distinct()


class User(AbstractUser):
    email = models.EmailField("email address", blank=True)
    mobile = models.CharField(
        "mobile number",
        max_length=16,
        blank=True,
        validators=[validate_e164],
        help_text="International format (E.164), for example +15555550100. Used for SMS alerts.",
    )
    # Contact details, names, status and roles are configuration; the password hash and the
    # last-login stamp are not kept in history.
    history = ConfigurationHistory(excluded_fields=["password", "last_login"])

    objects = BreakglassUserManager()

    def has_break_glass_rights(self) -> bool:
        """Whether this user can open emergency access, and so gets the strict session limits.

        Administrators, security reviewers and break-glass users of any group (authorized users
        of recovery policies join them with that feature).
        """
        if self.is_superuser or self.is_staff:
            return True
        return (
            self.groups.filter(name=SECURITY_REVIEWERS_GROUP).exists()
            or self.break_glass_groups.exists()
        )


# Backup codes: 10 characters from an alphabet without look-alikes (0/o, 1/l/i), about
# 49 bits each, shown as two blocks of five.
BACKUP_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
BACKUP_CODE_LENGTH = 10


def normalize_backup_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def hash_backup_code(code: str) -> str:
    """Keyed hash of a backup code: a database dump alone cannot be brute-forced."""
    return salted_hmac(
        "accounts.backup-code", normalize_backup_code(code), algorithm="sha256"
    ).hexdigest()


def new_backup_code() -> str:
    raw = "".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


class BackupCodeDevice(ThrottlingMixin, Device):
    """A django-otp device holding one-time backup codes, stored only as keyed hashes.

    django-otp's own StaticDevice keeps codes in plaintext; this one never does.
    """

    class Meta:
        verbose_name = "backup code set"

    def get_throttle_factor(self) -> int:
        return getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1)

    def unused_count(self) -> int:
        return self.codes.filter(used_at__isnull=True).count()

    def verify_token(self, token: str) -> bool:
        """Accept an unused code once. A conditional UPDATE makes the use single even when the
        same code arrives in parallel: only one UPDATE finds the row still unused."""
        if not self.verify_is_allowed()[0]:
            return False
        digest = hash_backup_code(str(token))
        matched = [
            code.pk
            for code in self.codes.filter(used_at__isnull=True)
            if hmac.compare_digest(code.digest, digest)
        ]
        used = bool(matched) and BackupCode.objects.filter(
            pk=matched[0], used_at__isnull=True
        ).update(used_at=timezone.now())
        if used:
            self.throttle_reset()
        else:
            self.throttle_increment()
        return bool(used)


class BackupCode(models.Model):
    device = models.ForeignKey(BackupCodeDevice, on_delete=models.CASCADE, related_name="codes")
    digest = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "digest"], name="backup_code_unique_digest")
        ]

    def __str__(self) -> str:
        return f"backup code {self.pk} ({'used' if self.used_at else 'unused'})"

import hmac
import secrets
import time
from base64 import b32encode
from binascii import unhexlify
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.contrib.auth.models import Group as AuthGroup
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP
from django_otp.util import random_hex

from accounts.phone import validate_e164
from accounts.rights import releasing_rights
from audit.history import ConfigurationHistory
from recovery.crypto import decrypt_field, encrypt_field

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
    sso_subject = models.CharField(
        "identity provider subject", max_length=255, null=True, blank=True, unique=True,
        help_text="The provider's stable `sub` claim: single sign-on finds this account by it, "
                  "never by name or email.")
    may_use_local_login = models.BooleanField(
        "may use the local login", default=False,
        help_text="With single sign-on configured, only these accounts may sign in with the "
                  "local password and second factor (the break-glass login for the day the "
                  "provider is down); each use alerts the security reviewers.")
    # Contact details, names, status and roles are configuration; the password hash and the
    # last-login stamp are not kept in history.
    history = ConfigurationHistory(excluded_fields=["password", "last_login"])

    objects = BreakglassUserManager()

    @property
    def is_security_reviewer(self) -> bool:
        """An active member of the "Security reviewers" group: sees every grant and review,
        receives every alert, may end any access (SPEC §1)."""
        return bool(self.pk and self.is_active and self.groups.filter(
            name=SECURITY_REVIEWERS_GROUP).exists())

    def has_break_glass_rights(self) -> bool:
        """Whether an action of this user can release access or secrets, and so whether the
        strict idle and absolute session limits apply (SPEC §2.1).

        Staff and superusers, security reviewers, break-glass users and owners of any group,
        holders of an active grant, authorized users of any recovery policy (quorum holders)
        and website managers. One query: the session middleware asks once a limit has passed.
        """
        if self.is_superuser or self.is_staff:
            return True
        mine = type(self).objects.filter(pk=self.pk)
        return mine.filter(release_rights(OuterRef("pk"))).exists()


def release_rights(user) -> Q:
    """The condition "`user` (a pk or an OuterRef) holds a right that releases access or
    secrets", besides staff status, as EXISTS subqueries that each use an index: being a
    security reviewer, or any right another app registered in accounts.rights."""
    reviewer = AuthGroup.objects.filter(user=user, name=SECURITY_REVIEWERS_GROUP)
    condition = Q(Exists(reviewer))
    for right in releasing_rights(user):
        condition |= right
    return condition


def new_encrypted_seed() -> str:
    """A random 20-byte TOTP seed (django-otp's default size), hex, encrypted at once."""
    return encrypt_field(random_hex(20))


class TOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    """An authenticator app (TOTP, RFC 6238): django-otp's TOTPDevice, except that the seed
    is kept only encrypted under FIELD_ENCRYPTION_KEY (`reencrypt_fields` rotates it), so a
    copy of the database alone cannot produce codes."""

    encrypted_key = models.TextField(default=new_encrypted_seed, editable=False)
    step = models.PositiveSmallIntegerField(default=30, help_text="The time step in seconds.")
    t0 = models.BigIntegerField(default=0, help_text="The Unix time at which steps start.")
    digits = models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)
    tolerance = models.PositiveSmallIntegerField(
        default=1, help_text="How many time steps before or after now are accepted.")
    drift = models.SmallIntegerField(
        default=0, help_text="Time steps the app is known to differ from our clock.")
    last_t = models.BigIntegerField(
        default=-1, help_text="The time step of the last code accepted: a code is used once.")

    class Meta(Device.Meta):
        verbose_name = "authenticator app"

    @property
    def bin_key(self) -> bytes:
        return unhexlify(decrypt_field(self.encrypted_key))

    def get_throttle_factor(self) -> int:
        return getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1)

    def verify_token(self, token) -> bool:
        """As django-otp's TOTPDevice: a code once, within the tolerance, throttled."""
        if not self.verify_is_allowed()[0]:
            return False
        try:
            token = int(token)
        except (TypeError, ValueError):
            verified = False
        else:
            check = TOTP(self.bin_key, self.step, self.t0, self.digits, self.drift)
            check.time = time.time()
            verified = check.verify(token, self.tolerance, self.last_t + 1)
        if not verified:
            self.throttle_increment(commit=True)
            return False
        self.last_t, self.drift = check.t(), check.drift
        self.throttle_reset(commit=False)
        self.set_last_used_timestamp(commit=False)
        self.save()
        return True

    @property
    def config_url(self) -> str:
        """The otpauth:// URL the enrolment QR code carries (Key Uri Format)."""
        issuer = settings.OTP_TOTP_ISSUER.replace(":", "")
        params = urlencode({"secret": b32encode(self.bin_key), "algorithm": "SHA1",
                            "digits": self.digits, "period": self.step})
        label = quote(f"{issuer}:{self.user.get_username()}")
        return f"otpauth://totp/{label}?{params}&issuer={quote(issuer)}"


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


class SsoAssertion(Device):
    """Stands for the second factor the identity provider asserted at sign-in (`amr` holds
    mfa or hwk): django-otp marks a session verified by a device. It accepts no code of its
    own, and enrolment, the verify page and step-ups never offer it."""

    class Meta:
        verbose_name = "second factor asserted by the identity provider"

    def verify_token(self, token: str) -> bool:
        return False


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


class DirectoryGroup(models.Model):
    """A group the company's directory pushes over SCIM; only SCIM changes it (audited there),
    the admin shows it. It gives nothing by itself: a catalog group may take its members from
    it, like a rota."""

    display_name = models.CharField(max_length=255, unique=True)
    external_id = models.CharField(max_length=255, blank=True,
                                   help_text="The identity provider's own id for the group.")
    members = models.ManyToManyField(User, related_name="directory_groups", blank=True)
    history = ConfigurationHistory(m2m_fields=[members])

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name

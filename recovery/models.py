"""Quorum recovery (SPEC §2.5): policies naming one to three authorized users and how many of
them must agree, the emergency credentials they unseal (encrypted at rest), the offline bundle
that lets them do it with every server down, and the online attempts with their confirmations.
Transitions live in recovery/services.py."""

from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Exists, Q

from audit.history import ConfigurationHistory
from recovery.crypto import new_signing_seed
from risk.models import Sensitivity

ENCRYPTED = "Encrypted at rest with FIELD_ENCRYPTION_KEY; never shown in lists or history."


class RecoveryEnrolment(models.Model):
    """A user's recovery key pair. The private key is sealed under their passphrase (Argon2id),
    which the server never keeps: only they can open their share of a bundle."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="recovery_enrolment")
    public_key = models.CharField(max_length=64)
    sealed_private_key = models.TextField()
    salt = models.CharField(max_length=64)
    opslimit = models.BigIntegerField()
    memlimit = models.BigIntegerField()
    enrolled_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"recovery key of {self.user}"

    def as_fields(self) -> dict:
        return {"public_key": self.public_key, "sealed_private_key": self.sealed_private_key,
                "salt": self.salt, "opslimit": self.opslimit, "memlimit": self.memlimit}


class RecoveryPolicy(models.Model):
    """Soffid's "Break-glass recovery configuration": who may break the glass together, how
    many must agree, and the application allowed to fetch the offline bundle."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    first_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+", verbose_name="first user")
    second_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    related_name="+", null=True, blank=True,
                                    verbose_name="second user")
    third_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+", null=True, blank=True,
                                   verbose_name="third user")
    required = models.PositiveSmallIntegerField(
        "number of users required to break the glass", default=1,
        validators=[MinValueValidator(1), MaxValueValidator(3)])
    sensitivity = models.CharField(
        max_length=16, choices=Sensitivity.choices, default=Sensitivity.HIGH,
        help_text="With the incident's severity, picks the risk rule that applies.")
    armed_by_incident = models.BooleanField(
        "only during a linked incident", default=False,
        help_text="Attempts can start only while an open incident is linked to this policy.")
    review_before_next = models.BooleanField(
        "previous use must be reviewed first", default=False,
        help_text="A new attempt waits until the review of the previous use is closed.")
    enabled = models.BooleanField(
        default=False, help_text="Every authorized user must have enrolled a recovery "
                                 "passphrase before the policy can be enabled.")
    application = models.OneToOneField(
        "breakglass.Application", on_delete=models.PROTECT, null=True, blank=True,
        related_name="recovery_policy", verbose_name="authorized application",
        help_text="The one application allowed to fetch this policy's offline bundle.")
    attempt_minutes = models.PositiveIntegerField(
        "attempt window (minutes)", default=60,
        validators=[MinValueValidator(5), MaxValueValidator(24 * 60)])
    reveal_minutes = models.PositiveIntegerField(
        "reveal window (minutes)", default=15,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)])
    signing_seed = models.TextField(editable=False, help_text=ENCRYPTED)
    created_at = models.DateTimeField("created on", auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   null=True, blank=True, related_name="+", editable=False,
                                   verbose_name="created by")
    modified_at = models.DateTimeField("modified last on", auto_now=True)
    modified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    null=True, blank=True, related_name="+", editable=False,
                                    verbose_name="modified by")
    history = ConfigurationHistory(excluded_fields=["signing_seed", "modified_at"])

    class Meta:
        ordering = ["name"]
        verbose_name = "break-glass recovery configuration"
        verbose_name_plural = "break-glass recovery configurations"
        constraints = [
            models.CheckConstraint(condition=Q(required__gte=1, required__lte=3),
                                   name="recovery_required_1_to_3"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.signing_seed:  # every policy signs its bundles with a key of its own
            self.signing_seed = new_signing_seed()
        super().save(*args, **kwargs)

    @property
    def authorized_user_ids(self) -> list[int]:
        return [pk for pk in (self.first_user_id, self.second_user_id, self.third_user_id)
                if pk is not None]

    def is_authorized(self, user) -> bool:
        return user.pk in self.authorized_user_ids

    @property
    def attempt_window(self) -> timedelta:
        return timedelta(minutes=self.attempt_minutes)

    @property
    def reveal_window(self) -> timedelta:
        return timedelta(minutes=self.reveal_minutes)


def quorum_holder_rights(user) -> Q:
    """The releasing right this app gives (accounts.rights): authorized user of any policy."""
    return Q(Exists(RecoveryPolicy.objects.filter(
        Q(first_user=user) | Q(second_user=user) | Q(third_user=user))))


class EmergencyCredential(models.Model):
    """What the glass protects: a root password, a recovery key. Its fields are ciphertext."""

    policy = models.ForeignKey(RecoveryPolicy, on_delete=models.CASCADE,
                               related_name="credentials")
    name = models.CharField(max_length=120)
    username_encrypted = models.TextField(blank=True, help_text=ENCRYPTED)
    secret_encrypted = models.TextField(help_text=ENCRYPTED)
    notes_encrypted = models.TextField(blank=True, help_text=ENCRYPTED)
    rotation_due = models.BooleanField(
        default=False, help_text="Revealed since it was last rotated: change it, then record "
                                 "the rotation.")
    revealed_at = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    history = ConfigurationHistory(
        excluded_fields=["username_encrypted", "secret_encrypted", "notes_encrypted",
                         "reminded_at"])

    class Meta:
        ordering = ["policy", "name"]
        constraints = [models.UniqueConstraint(fields=["policy", "name"],
                                               name="one_credential_name_per_policy")]

    def __str__(self) -> str:
        return f"{self.name} ({self.policy})"


class RecoveryBundle(models.Model):
    """The signed offline bundle of a policy, re-issued on every change that affects it."""

    policy = models.ForeignKey(RecoveryPolicy, on_delete=models.CASCADE,
                               related_name="bundles")
    version = models.PositiveIntegerField()
    content = models.TextField(help_text="The bundle as served: holders' sealed shares and "
                                         "ciphertext only, no secret in clear.")
    fingerprint = models.CharField(max_length=100)
    issued_at = models.DateTimeField()

    class Meta:
        ordering = ["policy", "-version"]
        constraints = [models.UniqueConstraint(fields=["policy", "version"],
                                               name="one_bundle_per_policy_version")]

    def __str__(self) -> str:
        return f"{self.policy} bundle v{self.version}"


class RecoveryAttempt(models.Model):
    """One online break-glass: started by an authorized user, confirmed by enough of them
    within the attempt window; then the participants may see the credentials for the reveal
    window."""

    class Status(models.TextChoices):
        OPEN = "open", "Waiting for confirmations"
        BROKEN = "broken", "Glass broken"
        CANCELLED = "cancelled", "Cancelled"
        LAPSED = "lapsed", "Lapsed"

    policy = models.ForeignKey(RecoveryPolicy, on_delete=models.PROTECT,
                               related_name="attempts")
    initiator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                  related_name="recovery_attempts")
    reason = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    required = models.PositiveSmallIntegerField(
        "confirmations needed", null=True,
        help_text="The policy's number, or the risk rule's where that is higher.")
    incident = models.ForeignKey("risk.Incident", on_delete=models.PROTECT, null=True,
                                 blank=True, related_name="recovery_attempts")
    risk = models.JSONField(default=dict, blank=True)
    is_drill = models.BooleanField("drill", default=False)
    opened_at = models.DateTimeField()
    expires_at = models.DateTimeField(help_text="Lapses if not enough have confirmed by then.")
    broken_at = models.DateTimeField(null=True, blank=True)
    reveal_until = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [models.UniqueConstraint(fields=["policy"], condition=Q(status="open"),
                                               name="one_open_attempt_per_policy")]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"recovery attempt #{self.pk} on {self.policy}"

    @property
    def confirmations_needed(self) -> int:
        return self.required or self.policy.required

    def effective_status(self, at) -> str:
        """Open past its window counts as lapsed at once, whether or not the sweep ran."""
        if self.status == self.Status.OPEN and self.expires_at <= at:
            return self.Status.LAPSED
        return self.status


class Confirmation(models.Model):
    attempt = models.ForeignKey(RecoveryAttempt, on_delete=models.CASCADE,
                                related_name="confirmations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="recovery_confirmations")
    confirmed_at = models.DateTimeField()

    class Meta:
        ordering = ["confirmed_at"]
        constraints = [models.UniqueConstraint(fields=["attempt", "user"],
                                               name="one_confirmation_per_user")]

    def __str__(self) -> str:
        return f"{self.user} confirmed attempt #{self.attempt_id}"

"""Emergency website backups (SPEC §2.6): websites with the contacts their manager preset, the
one-time codes that prove control of a contact, the narrow emergency sessions they open, and
the backup jobs those sessions may start. Transitions live in backups/services.py."""

from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Exists, Q

from accounts.phone import validate_e164
from audit.history import ConfigurationHistory


class Website(models.Model):
    name = models.CharField(max_length=120)
    address = models.CharField(
        max_length=253, unique=True,
        help_text="The domain the owner types on the emergency page, e.g. example.org.")
    manager = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                related_name="managed_websites")
    manager_confirmed = models.BooleanField(
        default=True, editable=False,
        help_text="A manager named when the website was created has none of a manager's powers, "
                  "and the website sends no code, until a second administrator confirms.")
    pending_manager = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
        editable=False, related_name="+",
        help_text="Named by someone other than the manager in office: takes over only when a "
                  "second administrator confirms.")
    manager_named_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                         null=True, blank=True, editable=False,
                                         related_name="+")
    owner_name = models.CharField(max_length=120, blank=True)
    verification_email = models.EmailField(
        blank=True, help_text="Set by the manager only; receives the emergency codes.")
    verification_mobile = models.CharField(
        max_length=20, blank=True, validators=[validate_e164],
        help_text="E.164, set by the manager only; receives the emergency codes by SMS.")
    files_dir = models.CharField(
        "files directory", max_length=500, blank=True,
        help_text="A folder on this server, or on another over SSH: ssh://user@host:port/path "
                  "(its database is then dumped on that server).")
    database_url_encrypted = models.TextField(
        "database URL", blank=True, editable=False,
        help_text="Encrypted at rest (it may hold a password): SQLite file, PostgreSQL or "
                  "MariaDB/MySQL.")
    ssh_private_key_encrypted = models.TextField(
        "SSH private key", blank=True, editable=False,
        help_text="Encrypted at rest; signs in to the server of an ssh:// files directory.")
    ssh_passphrase_encrypted = models.TextField(blank=True, editable=False)
    ssh_host_key = models.CharField(
        "pinned SSH host key", max_length=4000, blank=True, editable=False,
        help_text="The key the server must present (type and base64), pinned by the manager.")
    ssh_host_key_pinned_at = models.DateTimeField(null=True, blank=True, editable=False)
    ssh_host_key_pinned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                               null=True, blank=True, editable=False,
                                               related_name="+")
    wordpress_settings = models.JSONField(
        null=True, blank=True, editable=False,
        help_text="What wp-config.php said when the manager confirmed it (never the password).")
    wordpress_confirmed_at = models.DateTimeField(null=True, blank=True, editable=False)
    wordpress_confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                               null=True, blank=True, editable=False,
                                               related_name="+")
    emergency_enabled = models.BooleanField("emergency access enabled", default=False)
    emergency_minutes = models.PositiveIntegerField(
        "emergency window (minutes)", default=60,
        validators=[MinValueValidator(10), MaxValueValidator(24 * 60)])
    retention_days = models.PositiveIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(365)])
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    locked_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="20 wrong codes in a row lock the emergency flow until the manager unlocks it.")
    contacts_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    contacts_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                            null=True, blank=True, editable=False,
                                            related_name="+")
    contacts_hold_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="New contacts receive no code before this, unless a second administrator "
                  "approved the change.")
    history = ConfigurationHistory(excluded_fields=["database_url_encrypted",
                                                    "ssh_private_key_encrypted",
                                                    "ssh_passphrase_encrypted",
                                                    "consecutive_failures"])

    class Meta:
        ordering = ["address"]

    def __str__(self) -> str:
        return self.address

    @property
    def emergency_window(self) -> timedelta:
        return timedelta(minutes=self.emergency_minutes)


def website_manager_rights(user) -> Q:
    """The releasing right this app gives (accounts.rights): manager of any website."""
    return Q(Exists(Website.objects.filter(manager=user)))


class EmergencyChallenge(models.Model):
    """One code sent to a website's contacts. Only an HMAC of the code is kept, keyed and bound
    to this challenge and website (QUALITY Q1)."""

    website = models.ForeignKey(Website, on_delete=models.CASCADE, related_name="challenges")
    nonce = models.CharField(max_length=64, unique=True)
    code_mac = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField()
    wrong_tries = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    is_drill = models.BooleanField("drill", default=False,
                                   help_text="Started by the manager as a rehearsal.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"challenge #{self.pk} for {self.website}"


class EmergencySession(models.Model):
    """What a verified code opens: Start backup, its progress and Download backup for one
    website, until the window ends."""

    website = models.ForeignKey(Website, on_delete=models.CASCADE, related_name="sessions")
    challenge = models.OneToOneField(EmergencyChallenge, on_delete=models.PROTECT,
                                     related_name="session")
    started_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    is_drill = models.BooleanField("drill", default=False)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"emergency session #{self.pk} for {self.website}"

    def audit_actor(self) -> tuple[str, str, str]:
        return "website_owner", str(self.pk), f"owner of {self.website.address} (session {self.pk})"

    def is_open(self, at) -> bool:
        return self.ended_at is None and self.expires_at > at


class BackupJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"
        DELETED = "deleted", "Deleted after retention"

    IN_FLIGHT = (Status.QUEUED, Status.RUNNING)

    website = models.ForeignKey(Website, on_delete=models.CASCADE, related_name="backups")
    requested_by = models.ForeignKey(EmergencySession, on_delete=models.SET_NULL, null=True,
                                     blank=True, related_name="backups")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=16, blank=True)
    done_bytes = models.BigIntegerField(default=0)
    total_bytes = models.BigIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    archive_name = models.CharField(max_length=300, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(
            fields=["website"], condition=Q(status__in=["queued", "running"]),
            name="one_backup_in_flight_per_website")]

    def __str__(self) -> str:
        return f"backup #{self.pk} of {self.website} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == self.Status.COMPLETE:
            return 100
        return int(100 * self.done_bytes / self.total_bytes) if self.total_bytes else 0

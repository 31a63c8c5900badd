import re

from django.db import models

from audit.catalogue import ActorType, EventKind, Outcome
from audit.history import ConfigurationHistory

_ESCAPED = re.compile(r"\\(\\|0)")


def escape_nul(text: str) -> str:
    """PostgreSQL text and jsonb cannot hold NUL; a reversible escape lets any user text
    round-trip exactly (QUALITY Q27)."""
    if "\\" not in text and "\x00" not in text:
        return text
    return text.replace("\\", "\\\\").replace("\x00", "\\0")


def unescape_nul(text: str) -> str:
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: "\\" if m.group(1) == "\\" else "\x00", text)


def walk_strings(value, convert):
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, list):
        return [walk_strings(item, convert) for item in value]
    if isinstance(value, dict):
        return {convert(key): walk_strings(item, convert) for key, item in value.items()}
    return value


class NulSafeTextField(models.TextField):
    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return escape_nul(value) if isinstance(value, str) else value

    def from_db_value(self, value, expression, connection):
        return unescape_nul(value) if isinstance(value, str) else value


class NulSafeJSONField(models.JSONField):
    def get_prep_value(self, value):
        return super().get_prep_value(walk_strings(value, escape_nul))

    def from_db_value(self, value, expression, connection):
        return walk_strings(super().from_db_value(value, expression, connection), unescape_nul)


class AuditEvent(models.Model):
    """One link of the append-only, HMAC-chained audit trail. Written only by
    audit.services.record(); the database refuses UPDATE and DELETE (see migration 0002)."""

    sequence = models.BigIntegerField(unique=True)
    recorded_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=64, choices=EventKind.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = NulSafeTextField(blank=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = NulSafeTextField(blank=True)
    reason = NulSafeTextField(blank=True)
    data = NulSafeJSONField(default=dict, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    user_agent = NulSafeTextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    mac = models.CharField(max_length=64)

    class Meta:
        ordering = ["-sequence"]
        # Declared here rather than with db_index: on PostgreSQL, db_index on a text column
        # adds a second, LIKE-only index, which every audited change would pay to update.
        indexes = [
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["kind"], name="audit_event_kind"),
            models.Index(fields=["actor_id"], name="audit_event_actor_id"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.kind} by {self.actor_label or self.actor_type}"


class ChainHead(models.Model):
    """The single row every writer locks to take the next sequence number: the sequence is
    gapless because it is taken under this lock, never from a database sequence."""

    sequence = models.BigIntegerField(default=0)
    mac = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"audit chain head at #{self.sequence}"


class Checkpoint(models.Model):
    """A copy of the chain head written hourly, also outside the database (CHECKPOINT_DIR)."""

    sequence = models.BigIntegerField()
    mac = models.CharField(max_length=64)
    written_at = models.DateTimeField(db_index=True)
    verified = models.BooleanField(default=False)
    problem = models.TextField(blank=True)

    class Meta:
        ordering = ["-written_at"]
        get_latest_by = "written_at"

    def __str__(self) -> str:
        return f"checkpoint at #{self.sequence} ({self.written_at:%Y-%m-%d %H:%M} UTC)"


class Delivery(models.Model):
    """One alert to one recipient on one channel: the transactional outbox. Written in the
    same transaction as its event; sent by the relay after commit, with retries. Once sent,
    its status, send time and provider id never change (database triggers, audit/triggers.py).
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"
        WEBHOOK = "webhook", "Webhook"
        CONNECTOR = "connector", "Provisioning connector"
        SLACK = "slack", "Slack"
        FANOUT = "fanout", "Fan-out (the relay expands it into the deliveries above)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (dead-lettered)"

    event = models.ForeignKey(AuditEvent, on_delete=models.PROTECT, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    recipient = models.CharField(max_length=254)
    subject = NulSafeTextField(blank=True)
    body = NulSafeTextField()
    html_body = NulSafeTextField(blank=True)
    sensitive = models.BooleanField(
        default=False, help_text="The body carries a secret and is redacted once sent."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(db_index=True)
    next_attempt_at = models.DateTimeField(db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(
        max_length=32, blank=True,
        help_text="Set by each claim; the relay's later writes must match it (fencing).",
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=128, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "channel", "recipient"], name="delivery_idempotency_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.recipient} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"{self.event_id}:{self.channel}:{self.recipient}"


class Heartbeat(models.Model):
    """The last time a named background loop proved it was alive (read by /healthz)."""

    name = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S} UTC"


class WebhookEndpointQuerySet(models.QuerySet):
    def recipients_for(self, kind: str) -> list[str]:
        """The outbox recipient of each enabled endpoint that takes alerts about `kind`."""
        return [endpoint.recipient for endpoint in self.filter(enabled=True)
                if endpoint.takes(kind)]


class WebhookEndpoint(models.Model):
    """A receiver of alert webhooks, signed per Standard Webhooks with its own secret (see
    audit/webhooks.py). During a rotation the previous secret signs too, until
    `previous_secret_expires_at`. Both are encrypted at rest and kept out of the history."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(
        "URL", max_length=500,
        help_text="https://, or http:// to 127.0.0.1 or localhost outside production.")
    enabled = models.BooleanField(default=True)
    event_kinds = models.JSONField(
        default=list, blank=True,
        help_text="The kinds of event whose alerts it receives; none means every alert.")
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    history = ConfigurationHistory(excluded_fields=["secret_encrypted",
                                                    "previous_secret_encrypted"])

    objects = WebhookEndpointQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipient(self) -> str:
        return f"webhook:{self.pk}"

    def takes(self, kind: str) -> bool:
        return not self.event_kinds or kind in self.event_kinds

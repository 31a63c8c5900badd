from django.db import models
from django.db.models import Q
from django.utils import timezone

from audit.history import ConfigurationHistory


class SiemStream(models.Model):
    """One destination that receives every audit event, in sequence order, with its MAC.

    The audit table is the outbox: `sent_through` is the last sequence the destination
    accepted, and moves only after it accepted the next batch (at-least-once; after a crash
    the last batch may arrive twice, and the SIEM de-duplicates by sequence). One sender at
    a time holds the stream's lease (`claimed_until`, `lease_token`); its writes are fenced
    by the token (siem/services.py)."""

    class Kind(models.TextChoices):
        SYSLOG = "syslog", "Syslog over TCP (RFC 5424, octet-counted; optional TLS, RFC 5425)"
        JSONL_FILE = "jsonl_file", "JSON lines appended to a file"
        JSONL_HTTP = "jsonl_http", "JSON lines POSTed to an HTTP endpoint (application/x-ndjson)"

    class Start(models.TextChoices):
        BEGINNING = "beginning", "From the chain's first event"
        NOW = "now", "From the next event recorded (nothing before it is sent)"

    name = models.SlugField(max_length=80, unique=True,
                            help_text="Short name shown to people, e.g. splunk-prod.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    address = models.CharField(
        max_length=2000,
        help_text="Syslog: host:port. JSON lines file: an absolute path. HTTP: the https:// URL "
                  "the batches are POSTed to.")
    tls = models.BooleanField("TLS", default=False, help_text="Syslog only: RFC 5425 over TLS.")
    tls_ca_file = models.CharField(
        "TLS CA file", max_length=1000, blank=True,
        help_text="Syslog over TLS: a PEM file of the CAs to trust (empty: the system's).")
    tls_server_name = models.CharField(
        "TLS server name", max_length=253, blank=True,
        help_text="Syslog over TLS: the name the certificate must carry (empty: the host).")
    bearer_token_encrypted = models.TextField("bearer token", blank=True, editable=False)
    enabled = models.BooleanField(default=True, help_text="Off: the stream pauses; its place "
                                                          "is kept and it resumes from there.")
    start_from = models.CharField(max_length=16, choices=Start.choices, default=Start.BEGINNING)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sent_through = models.BigIntegerField(
        default=0, editable=False, help_text="The last sequence the destination accepted.")
    last_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    failures = models.PositiveIntegerField(default=0, editable=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    history = ConfigurationHistory(excluded_fields=[
        "bearer_token_encrypted", "sent_through", "last_sent_at", "last_error", "failures",
        "next_attempt_at", "claimed_until", "lease_token"])

    # The columns only the sender writes; a configuration change never touches them.
    PROGRESS_FIELDS = ("sent_through", "last_sent_at", "last_error", "failures",
                       "next_attempt_at", "claimed_until", "lease_token")

    class Meta:
        ordering = ["name"]
        verbose_name = "SIEM stream"
        constraints = [
            models.CheckConstraint(condition=Q(sent_through__gte=0),
                                   name="siem_stream_sent_through_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name

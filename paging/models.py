"""Paging systems that call Breakglass with their own webhook payloads (PagerDuty v3,
Opsgenie): who may call (subscriptions and their secrets), what a priority means here (the
priority table), what a service arms (service links), and which deliveries were already
taken (received events, for replay protection)."""

from django.db import models

from audit.catalogue import ActorType
from audit.history import ConfigurationHistory
from risk.models import Severity


class Source(models.TextChoices):
    PAGERDUTY = "pagerduty", "PagerDuty"
    OPSGENIE = "opsgenie", "Opsgenie"


class Subscription(models.Model):
    """One webhook sender, addressed by its slug in the URL (/integrations/<source>/<slug>).
    PagerDuty signs each body with the subscription's secret, so the secret is kept encrypted
    (it is needed to compute the HMAC); Opsgenie sends a bearer token, kept as a hash."""

    name = models.CharField(max_length=100, unique=True,
                            help_text="Shown in the audit trail, e.g. \"Production\".")
    slug = models.SlugField(max_length=50, unique=True,
                            help_text="The last part of the webhook URL.")
    source = models.CharField(max_length=16, choices=Source.choices)
    enabled = models.BooleanField(default=True)
    default_severity = models.CharField(
        max_length=8, choices=Severity.choices, default=Severity.SEV3,
        help_text="For an incident with no priority, or one the priority table lacks.")
    secret_encrypted = models.TextField(blank=True, editable=False)
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    history = ConfigurationHistory(excluded_fields=["secret_encrypted", "token_hash"])

    class Meta:
        ordering = ["source", "name"]

    def __str__(self) -> str:
        return f"{self.get_source_display()} subscription {self.name}"

    def audit_actor(self) -> tuple[str, str, str]:
        # Not a breakglass Application: the id says whose it is, the label reads in the trail.
        return ActorType.APPLICATION, f"paging:{self.pk}", str(self)[:150]

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted or self.token_hash)


class PrioritySeverity(models.Model):
    """A row of the priority table: a paging system's priority name ("P1") → a severity."""

    source = models.CharField(max_length=16, choices=Source.choices)
    priority = models.CharField(max_length=50, help_text="As the paging system names it, "
                                                         "e.g. P1.")
    severity = models.CharField(max_length=8, choices=Severity.choices)
    history = ConfigurationHistory()

    class Meta:
        ordering = ["source", "priority"]
        verbose_name = "priority → severity"
        verbose_name_plural = "priority → severity table"
        constraints = [models.UniqueConstraint(fields=["source", "priority"],
                                               name="paging_one_severity_per_priority")]

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.priority} → {self.get_severity_display()}"


# Kept by name so that save_service_link writes one history row for the row and its links
# together (simple-history alone writes one more for each link change).
SERVICE_LINK_HISTORY = ConfigurationHistory(m2m_fields=["groups", "policies"])


class ServiceLink(models.Model):
    """What an incident from one PagerDuty service, or one Opsgenie team or tag, arms."""

    source = models.CharField(max_length=16, choices=Source.choices)
    key = models.CharField(
        max_length=200, help_text="PagerDuty: the service id (e.g. PF9KMXH). Opsgenie: a team "
                                  "id or a tag of the alert.")
    description = models.CharField(max_length=200, blank=True)
    groups = models.ManyToManyField("breakglass.Group", related_name="paging_links", blank=True)
    policies = models.ManyToManyField("recovery.RecoveryPolicy", related_name="paging_links",
                                      blank=True)
    history = SERVICE_LINK_HISTORY

    class Meta:
        ordering = ["source", "key"]
        verbose_name = "service link"
        constraints = [models.UniqueConstraint(fields=["source", "key"],
                                               name="paging_one_link_per_key")]

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.key}"


class ReceivedEvent(models.Model):
    """A delivery already taken, by its event key (PagerDuty's event id; Opsgenie's alert id,
    action and update time): the unique constraint lets one of two copies through."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        IGNORED = "ignored", "Ignored"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE,
                                     related_name="received_events")
    event_key = models.CharField(max_length=255)
    event_type = models.CharField(max_length=100)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["subscription", "event_key"],
                                               name="paging_event_taken_once")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_key}"

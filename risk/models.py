"""Risk-based controls (SPEC §2.7): the sensitivity × severity rule table and the incidents
that arm groups and policies. The decision that applies a rule is in risk/rules.py; incident
transitions are in risk/incidents.py."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from audit.history import ConfigurationHistory

# The vocabulary shared by groups, recovery policies and the rule table: defined here, the
# lowest app that needs it, so that breakglass and recovery build on risk and not the reverse.
MIN_BREAK_GLASS_MINUTES = 15
MAX_BREAK_GLASS_MINUTES = 24 * 60
MIN_REQUEST_MINUTES = 15
MAX_REQUEST_MINUTES = 14 * 24 * 60


class Sensitivity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Severity(models.TextChoices):
    SEV1 = "sev1", "SEV1"
    SEV2 = "sev2", "SEV2"
    SEV3 = "sev3", "SEV3"
    SEV4 = "sev4", "SEV4"


class RiskRule(models.Model):
    """One cell of the rule table: what a group or policy of this sensitivity allows during an
    incident of this severity. The table must be whole and consistent (risk/rules.py)."""

    sensitivity = models.CharField(max_length=16, choices=Sensitivity.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    self_service = models.BooleanField(
        "self-service", default=True,
        help_text="Break-glass users may give themselves access at once (and an on-call "
                  "auto-approval counts). Off: access needs owners' approval.")
    max_minutes = models.PositiveIntegerField(
        "max minutes",
        validators=[MinValueValidator(MIN_REQUEST_MINUTES), MaxValueValidator(MAX_REQUEST_MINUTES)],
        help_text="Caps break-glass and requested access, 15 minutes to 14 days.")
    approvals = models.PositiveSmallIntegerField(
        "approvals", default=1, validators=[MinValueValidator(1), MaxValueValidator(3)],
        help_text="At least this many owners approve a request, or authorized users confirm "
                  "a quorum attempt (the group's or policy's own number applies if higher).")
    step_up = models.BooleanField(
        "step-up", default=False,
        help_text="Activation needs a one-time code verified in the last 5 minutes.")
    alert_email = models.BooleanField("email", default=True)
    alert_sms = models.BooleanField("SMS", default=True)
    alert_webhook = models.BooleanField("webhook", default=True)
    history = ConfigurationHistory()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sensitivity", "severity"],
                                               name="one_rule_per_cell")]

    def __str__(self) -> str:
        return self.cell

    @property
    def cell(self) -> str:
        return cell_label(self.sensitivity, self.severity)

    @property
    def channels(self) -> list[str]:
        return [channel for channel, on in (("email", self.alert_email), ("sms", self.alert_sms),
                                            ("webhook", self.alert_webhook)) if on]


def cell_label(sensitivity: str, severity: str) -> str:
    return f"{sensitivity} × {severity.upper()}"


class Incident(models.Model):
    """An incident from a paging system (PagerDuty/Opsgenie style) or the admin. While open it
    arms the groups and policies linked to it; resolving it ends the grants opened under it."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    external_id = models.CharField("external id", max_length=200, unique=True)
    title = models.CharField(max_length=300)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    url = models.URLField(max_length=500, blank=True)
    groups = models.ManyToManyField(
        "breakglass.Group", related_name="incidents", blank=True,
        help_text="Groups this incident arms while it is open.")
    policies = models.ManyToManyField(
        "recovery.RecoveryPolicy", related_name="incidents", blank=True,
        help_text="Quorum recovery policies this incident arms while it is open.")
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    history = ConfigurationHistory(m2m_fields=[groups, policies])

    class Meta:
        ordering = ["-opened_at"]

    def __str__(self) -> str:
        return f"{self.external_id} · {self.get_severity_display()} · {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED

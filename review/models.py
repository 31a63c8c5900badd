"""After the night (SPEC §2.8): every break-glass use opens a review; reviewers judge it,
with notes and a post-mortem link. Transitions live in review/services.py."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Review(models.Model):
    class Path(models.TextChoices):
        GROUP = "group", "Group break glass"
        API = "api", "Break glass through the API"
        QUORUM = "quorum", "Quorum recovery"
        BACKUP = "backup", "Emergency website backup"

    class Outcome(models.TextChoices):
        JUSTIFIED = "justified", "Justified"
        NOT_JUSTIFIED = "not_justified", "Not justified"
        DRILL = "drill", "Drill"

    path = models.CharField(max_length=16, choices=Path.choices)
    # Grants, attempts and sessions are never deleted in use (the admin refuses it); a test
    # or a purge that removes one takes its review with it.
    grant = models.OneToOneField("breakglass.Grant", on_delete=models.CASCADE, null=True,
                                 blank=True, related_name="review")
    attempt = models.OneToOneField("recovery.RecoveryAttempt", on_delete=models.CASCADE,
                                   null=True, blank=True, related_name="review")
    emergency_session = models.OneToOneField("backups.EmergencySession",
                                             on_delete=models.CASCADE, null=True, blank=True,
                                             related_name="review")
    group = models.ForeignKey("breakglass.Group", on_delete=models.PROTECT, null=True,
                              blank=True, related_name="reviews")
    policy = models.ForeignKey("recovery.RecoveryPolicy", on_delete=models.PROTECT, null=True,
                               blank=True, related_name="reviews")
    website = models.ForeignKey("backups.Website", on_delete=models.PROTECT, null=True,
                                blank=True, related_name="reviews")
    subject = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                                blank=True, related_name="reviews_of_my_use",
                                help_text="Who broke the glass; reviewers never review their "
                                          "own use.")
    subject_label = models.CharField(max_length=200)
    is_drill = models.BooleanField("drill", default=False)
    flags = models.JSONField(default=list, blank=True, help_text="Anomaly flags of the use.")
    opened_at = models.DateTimeField(db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    notes = models.TextField(blank=True)
    postmortem_url = models.URLField("post-mortem link", max_length=500, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    null=True, blank=True, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True,
                                        help_text="Open for 72 hours: all reviewers alerted.")
    aborted_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Someone used the alert's abort link.")

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["outcome", "opened_at"], name="review_open_idx")]
        constraints = [models.CheckConstraint(
            condition=Q(outcome="") | Q(reviewed_at__isnull=False),
            name="closed_review_has_a_time")]

    def __str__(self) -> str:
        drill = " (drill)" if self.is_drill else ""
        path = self.get_path_display().lower()
        return f"review #{self.pk}: {path} by {self.subject_label}{drill}"

    @property
    def is_open(self) -> bool:
        return not self.outcome

    @property
    def what(self) -> str:
        """The group, policy or website that was broken into."""
        return str(self.group or self.policy or self.website or "")


class AbortUse(models.Model):
    """A used "Not us — revoke and lock" link: each link works once."""

    token_digest = models.CharField(max_length=64, unique=True)
    grant = models.ForeignKey("breakglass.Grant", on_delete=models.PROTECT,
                              related_name="abort_uses")
    used_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                related_name="+")
    used_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"abort of grant #{self.grant_id} by {self.used_by}"

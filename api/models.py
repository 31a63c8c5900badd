from datetime import timedelta

from django.db import models

from breakglass.models import Application

# How long a key answers with its first answer; housekeeping removes older ones.
KEY_LIFETIME = timedelta(hours=24)


class IdempotencyKey(models.Model):
    """An application's Idempotency-Key on a POST (api/idempotency.py): claimed before the
    operation runs, then holding its answer for 24 hours so a retry gets the same one."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    application = models.ForeignKey(Application, on_delete=models.CASCADE,
                                    related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64,
                                   help_text="SHA-256 of the method, path and body.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application", "key"],
                                               name="one_idempotency_key_per_application")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of {self.application}"

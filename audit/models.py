from django.db import models


class Heartbeat(models.Model):
    """The last time a named background loop proved it was alive (read by /healthz)."""

    name = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S} UTC"

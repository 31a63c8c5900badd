"""Which Breakglass user a Slack user is: a link made by the person on both sides (the
signed link Slack showed only them, opened in their verified session)."""

from django.conf import settings
from django.db import models


class SlackLink(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="slack_link")
    team_id = models.CharField(max_length=32)
    slack_user_id = models.CharField(max_length=32)
    slack_name = models.CharField(max_length=150, blank=True,
                                  help_text="The Slack username when linked, for display.")
    linked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team_id", "slack_user_id"],
                                    name="one_link_per_slack_user"),
        ]

    def __str__(self) -> str:
        return f"{self.slack_name or self.slack_user_id} ({self.team_id}) → {self.user}"

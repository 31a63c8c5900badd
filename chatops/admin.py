from django.contrib import admin

from audit.admin import ReadOnlyAdmin
from chatops.models import SlackLink


@admin.register(SlackLink)
class SlackLinkAdmin(ReadOnlyAdmin):
    """Links are made and removed by their users (audited); a deactivated user's link no
    longer acts."""

    list_display = ("user", "slack_name", "slack_user_id", "team_id", "linked_at")
    search_fields = ("user__username", "slack_name", "slack_user_id")
    list_select_related = ("user",)

from django.conf import settings
from django.core.checks import Error, register


@register()
def slack_settings_check(app_configs, **kwargs):
    """A bot token without the signing secret would post buttons whose clicks are all
    refused; a secret without the token could not answer them."""
    errors = []
    if bool(settings.SLACK_BOT_TOKEN) != bool(settings.SLACK_SIGNING_SECRET):
        errors.append(Error("SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set together.",
                            id="chatops.E001",
                            hint="Both are on the Slack app's settings pages."))
    if settings.SLACK_CHANNEL and not settings.SLACK_BOT_TOKEN:
        errors.append(Error("SLACK_CHANNEL is set: SLACK_BOT_TOKEN posts to it.",
                            id="chatops.E002"))
    return errors

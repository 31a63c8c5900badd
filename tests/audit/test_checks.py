"""audit.E004: the alert webhook's secret from the environment follows the whsec_ rule the
start-up check applies, on the settings in force."""

import pytest
from django.core.checks import registry

from audit.checks import alert_webhook_secret_check
from audit.webhooks import new_secret

OLD_STYLE = "a-shared-secret-of-more-than-16-characters"


def e004() -> list:
    assert alert_webhook_secret_check in registry.registry.get_checks()
    return [error for error in alert_webhook_secret_check(None) if error.id == "audit.E004"]


@pytest.mark.parametrize("secret", [OLD_STYLE, "", "whsec_c2hvcnQ=", "whsec_not base64!"])
def test_a_webhook_address_with_a_secret_that_is_not_whsec_fails_the_check(settings, secret):
    settings.ALERT_WEBHOOK_URL = "https://soc.example/hooks"
    settings.ALERT_WEBHOOK_SECRET = secret
    (error,) = e004()
    assert "whsec_" in error.msg and "24 to 64" in error.msg
    assert "os.urandom(32)" in error.hint
    if secret:
        assert secret not in error.msg + error.hint  # a secret never reaches the output


def test_a_whsec_secret_passes_the_check(settings):
    settings.ALERT_WEBHOOK_URL = "https://soc.example/hooks"
    settings.ALERT_WEBHOOK_SECRET = new_secret()
    assert e004() == []


def test_no_webhook_address_needs_no_secret(settings):
    settings.ALERT_WEBHOOK_URL = ""
    settings.ALERT_WEBHOOK_SECRET = OLD_STYLE
    assert e004() == []

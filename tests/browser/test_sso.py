"""Single sign-on in Chromium through the real test provider (tests/idp/ on 127.0.0.1; the
app's live server on localhost, so the two keep their own cookies): a person whose provider
asserted a second factor lands in the catalog, signed in; the local login says it is the
break-glass login."""

import re

import pytest

from accounts.models import User
from audit.catalogue import EventKind
from audit.models import AuditEvent
from tests.accounts.idp_server import identity_provider  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_person_signs_in_through_the_provider(live_server, page, settings,
                                                identity_provider):  # noqa: F811
    settings.OIDC_ISSUER = identity_provider.issuer
    settings.OIDC_RP_CLIENT_ID = identity_provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = identity_provider.client_secret
    settings.OIDC_CREATE_USER = True

    page.goto(f"{live_server.url}/accounts/login/")
    assert page.get_by_text("Break-glass local login").is_visible()
    page.get_by_role("link", name="Sign in with single sign-on").click()
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/login/"))
    page.get_by_label("Username").fill("sso-mfa")
    page.get_by_label("Password").fill(identity_provider.password("sso-mfa"))
    page.get_by_role("button", name="Sign in to the provider").click()

    page.wait_for_url(re.compile(r"/catalog/$"))
    assert page.get_by_text("Sign out (sso-mfa)").is_visible()
    user = User.objects.get(username="sso-mfa")
    assert AuditEvent.objects.get(kind=EventKind.SSO_SIGN_IN).actor_id == str(user.pk)

"""Passkeys in Chromium's virtual authenticator (CDP WebAuthn): alice adds one on her account
page after proving her password, signs in with her password and the passkey, and later gives
the step-up a critical break glass wants with it instead of a typed code."""

import re
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from django_otp_webauthn.models import WebAuthnCredential

from accounts.models import User
from accounts.services import STEP_UP_SESSION_KEY
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from breakglass.models import Grant
from demo.organisation import seed_demo
from tests.browser.conftest import sign_in_page
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def passkey_site(live_server, settings):
    """Passkeys are bound to a domain name: the live server is on localhost."""
    settings.OTP_WEBAUTHN_RP_ID = "localhost"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [live_server.url]
    assert live_server.url.startswith("http://localhost:")
    return live_server.url


def add_virtual_authenticator(page) -> tuple:
    """A security key with a PIN, which always says the person was verified."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "usb", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
    return cdp, added["authenticatorId"]


def age_the_step_up(page) -> None:
    """Time passes: the code verified at sign-in no longer counts as a step-up."""
    session_key = next(cookie["value"] for cookie in page.context.cookies()
                       if cookie["name"] == "sessionid")
    session = SessionStore(session_key=session_key)
    session[STEP_UP_SESSION_KEY] = (timezone.now() - timedelta(minutes=10)).timestamp()
    session.save()


def test_alice_adds_a_passkey_signs_in_with_it_and_steps_up_with_it(passkey_site, page):
    seed_demo(PASSWORD)
    alice = User.objects.get(username="alice")
    sign_in_page(page, passkey_site, alice)
    cdp, authenticator = add_virtual_authenticator(page)

    # Adding one: the password first (the code from signing in is fresh), then the ceremony.
    page.goto(f"{passkey_site}/accounts/")
    assert page.get_by_text("None yet.").is_visible()
    page.locator("#id_passkey-password").fill(PASSWORD)
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_role("button", name="Create the passkey").click()
    page.wait_for_url(re.compile(r"/accounts/$"))
    assert page.get_by_role("button", name="Remove the passkey Passkey 1").is_visible()
    credential = WebAuthnCredential.objects.get(user=alice, confirmed=True)
    assert len(cdp.send("WebAuthn.getCredentials",
                        {"authenticatorId": authenticator})["credentials"]) == 1
    added = AuditEvent.objects.get(kind=EventKind.PASSKEY_ADDED)
    assert added.target_id == str(alice.pk)
    assert Delivery.objects.filter(event=added, recipient=alice.email).exists()

    # Signing in: the password, then the passkey instead of a code.
    page.context.clear_cookies()
    page.goto(f"{passkey_site}/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Use your passkey").click()
    page.wait_for_url(re.compile(r"/catalog/$"))
    verified = AuditEvent.objects.filter(kind=EventKind.OTP_VERIFIED).latest("sequence")
    assert verified.data == {"method": "passkey"}
    credential.refresh_from_db()
    assert credential.last_used_at is not None

    # The step-up of a critical break glass (the demo's SEV1 on prod-database wants one).
    age_the_step_up(page)
    page.goto(f"{passkey_site}/catalog/prod-database/")
    page.get_by_label("Reason").fill("Primary database refuses connections")
    page.get_by_label("Incident").select_option("INC-2041")
    page.get_by_role("button", name="Break glass").click()
    assert page.get_by_text(re.compile("code", re.IGNORECASE)).first.is_visible()
    assert not Grant.objects.filter(user=alice, status=Grant.Status.ACTIVE).exists()

    page.get_by_role("button", name="Confirm with your passkey").click()
    page.get_by_text("Confirmed with your passkey").wait_for()
    assert page.get_by_label("Reason").input_value() == "Primary database refuses connections"
    page.get_by_role("button", name="Break glass").click()
    page.wait_for_url(re.compile(r"/access/$"))
    grant = Grant.objects.get(user=alice, status=Grant.Status.ACTIVE)
    assert grant.group.slug == "prod-database"

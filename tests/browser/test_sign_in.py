"""Sign-in in a real browser: password, then a TOTP code, then a protected page."""

import base64
import re

import pytest
from django_otp.oath import totp

from tests.conftest import PASSWORD, add_authenticator, current_totp, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_password_and_totp_sign_in_reaches_the_account_page(live_server, page):
    user = make_user("mark")
    device = add_authenticator(user)

    page.goto(f"{live_server.url}/accounts/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill("mark")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()

    page.wait_for_url(re.compile(r"/accounts/two-factor/verify/"))
    page.get_by_label("Code").fill(current_totp(device))
    page.get_by_role("button", name="Verify").click()

    page.wait_for_url(f"{live_server.url}/accounts/")
    assert page.get_by_role("heading", name="Your account").is_visible()
    assert page.get_by_text("Set up", exact=True).is_visible()


def test_first_sign_in_enrols_an_authenticator_from_the_page(live_server, page):
    make_user("nina")
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("nina")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()

    page.wait_for_url(re.compile(r"/accounts/two-factor/"))
    assert page.get_by_alt_text("QR code for your authenticator app").is_visible()
    secret = page.locator("code.secret").inner_text().replace(" ", "").strip()
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    page.get_by_label("6-digit code from your app").fill(f"{totp(key):06d}")
    page.get_by_role("button", name="Confirm").click()

    assert page.get_by_role("heading", name="Save your backup codes").is_visible()
    assert page.locator("ol.backup-codes li").count() == 10
    page.get_by_role("link", name="I have saved these codes").click()
    assert page.get_by_role("heading", name="Catalog").is_visible()

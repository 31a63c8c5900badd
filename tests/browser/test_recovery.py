"""Issue 6's walk-through in Chromium: alice starts a recovery attempt on root-credentials, bob
confirms with a fresh code, both see the credential; erin, who did not confirm, does not; the
credential is then due for rotation."""

import re

import pytest

from accounts.models import User
from demo.organisation import seed_demo
from recovery.models import EmergencyCredential
from tests.browser.conftest import DESKTOP, sign_in_page
from tests.conftest import PASSWORD, current_totp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in(browser, base: str, user: User, viewport=DESKTOP):
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(15_000)
    return page, sign_in_page(page, base, user)


def test_alice_and_bob_break_the_glass_erin_sees_nothing(live_server, browser):
    seed_demo(PASSWORD)
    alice, bob, erin = (User.objects.get(username=name) for name in ("alice", "bob", "erin"))
    page, alice_device = signed_in(browser, live_server.url, alice)
    page.goto(f"{live_server.url}/recovery/")
    page.get_by_label("Reason").fill("SSO outage: need the cloud root account")
    # A fresh code: the one used to sign in cannot be used twice; the next one can.
    page.get_by_label("One-time code").fill(current_totp(alice_device, steps_ahead=1))
    page.get_by_role("button", name="Start break-glass recovery").click()
    page.wait_for_url(re.compile(r"/recovery/attempts/\d+/$"))
    attempt_url = page.url
    assert page.get_by_text("1 of 2 needed").is_visible()

    bobs, bob_device = signed_in(browser, live_server.url, bob)
    bobs.goto(attempt_url)
    bobs.get_by_label("One-time code").fill(current_totp(bob_device, steps_ahead=1))
    bobs.get_by_role("button", name="Confirm").click()
    bobs.get_by_role("button", name="Show credentials").click()
    assert bobs.get_by_text("demo-root-password-change-me").is_visible()
    page.goto(attempt_url)
    page.get_by_role("button", name="Show credentials").click()
    assert page.get_by_text("demo-root-password-change-me").is_visible()

    erins, _ = signed_in(browser, live_server.url, erin)
    erins.goto(attempt_url)
    assert erins.get_by_text("Glass broken").is_visible()
    assert erins.get_by_text("demo-root-password-change-me").count() == 0
    assert erins.get_by_role("button", name="Show credentials").count() == 0
    assert EmergencyCredential.objects.get().rotation_due
    for opened in (page, bobs, erins):
        opened.context.close()

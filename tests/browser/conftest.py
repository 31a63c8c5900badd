import re

import pytest

from tests.conftest import PASSWORD, add_authenticator, current_totp

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def page(browser, request):
    context = browser.new_context(viewport=request.param)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def sign_in_page(page, base: str, user):
    """Sign `user` in through the pages (password, then a code); returns their authenticator."""
    device = add_authenticator(user)
    page.goto(f"{base}/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Code").fill(current_totp(device))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/catalog/$"))
    return device

"""Issue 5's walk-through in Chromium: dave requests staging for four hours, cannot approve his
own request, bob approves it on /requests/<id>/, and dave has access until four hours after
the approval."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from breakglass.models import AccessRequest, Grant
from demo.organisation import seed_demo
from tests.browser.conftest import DESKTOP, sign_in_page
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dave_requests_staging_and_bob_approves(live_server, page, browser):
    seed_demo(PASSWORD)
    dave, bob = User.objects.get(username="dave"), User.objects.get(username="bob")
    sign_in_page(page, live_server.url, dave)
    page.get_by_role("link", name="Staging environment").click()
    page.get_by_label("Duration").select_option(label="4 hours")
    page.get_by_label("Reason").fill("Deploy the payment hotfix to staging")
    page.get_by_role("button", name="Request access").click()
    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    request_url = page.url
    assert page.get_by_text("You cannot approve your own request").is_visible()
    assert page.get_by_role("button", name="Approve").count() == 0
    access_request = AccessRequest.objects.get()
    assert access_request.status == "pending"

    bobs = browser.new_context(viewport=DESKTOP)
    other = bobs.new_page()
    other.set_default_timeout(15_000)
    sign_in_page(other, live_server.url, bob)
    other.goto(f"{live_server.url}/access/")
    other.get_by_role("link", name=re.compile("dave → Staging")).click()
    assert other.url == request_url
    other.get_by_label("Comment").fill("Go ahead")
    approved_at = timezone.now()
    other.get_by_role("button", name="Approve").click()
    assert other.get_by_text("Approved.").is_visible()
    bobs.close()

    grant = Grant.objects.get(pk=access_request.grant_id)
    assert grant.status == "active"
    assert grant.activated_at >= approved_at
    assert grant.expires_at - grant.activated_at == timedelta(hours=4)
    page.goto(f"{live_server.url}/access/")
    countdown = page.locator("[data-countdown]")
    assert re.match(r"(3 h 59 min|4 h 0 min)", countdown.inner_text())

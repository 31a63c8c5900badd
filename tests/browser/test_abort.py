"""The abort link in Chromium: alice breaks glass on prod-database under the demo's SEV1; the
worker sends the alerts; erin (security reviewer) opens the "Not us — revoke and lock" link
from her email, signs in, confirms, and alice's access ends and her account is locked."""

import re

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import User
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import relay_if_due
from audit.services import verify_trail
from breakglass.models import Grant, Group
from breakglass.services.break_glass import break_glass
from demo.organisation import DEMO_INCIDENT, seed_demo
from tests.browser.conftest import DESKTOP, sign_in_page
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("page", [DESKTOP], indirect=True, ids=["desktop"])
def test_erin_revokes_and_locks_alice_from_her_alert(live_server, page):
    seed_demo(PASSWORD)
    mail.outbox.clear()
    alice = User.objects.get(username="alice")
    erin = User.objects.get(username="erin")
    grant = break_glass(
        Group.objects.get(slug="prod-database"), actor=alice, reason="Primary refuses connections",
        incident=DEMO_INCIDENT, stepped_up_at=timezone.now())
    assert relay_if_due()  # the worker's tick expands the alerts; tasks run at once in tests

    [email] = [m for m in mail.outbox if m.to == [erin.email] and "broke glass" in m.subject]
    link = re.search(r"https?://[^/\s]+(/abort/[^/\s]+/)", email.body).group(1)

    page.goto(f"{live_server.url}{link}")  # signed out: deny by default, to the sign-in page
    page.wait_for_url(re.compile(r"/accounts/login/"))
    sign_in_page(page, live_server.url, erin)
    page.goto(f"{live_server.url}{link}")

    assert page.get_by_role("heading", name="Not us — revoke and lock").is_visible()
    assert page.get_by_text("alice broke glass on Production database").is_visible()
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE  # looking changes nothing
    page.get_by_role("button", name="Revoke and lock alice").click()

    page.get_by_role("heading", name="Revoked and locked").wait_for()
    assert page.get_by_text("their account is locked pending review").is_visible()
    grant.refresh_from_db()
    alice.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED and grant.ended_by == erin
    assert not alice.is_active
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_ABORTED).count() == 1

    # Back and submit again (a double click, a reload): the link is spent.
    page.goto(f"{live_server.url}{link}")
    assert page.get_by_role("heading", name="This link cannot be used").is_visible()
    assert page.get_by_text("This link has already been used.").is_visible()
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_ABORTED).count() == 1
    assert verify_trail().intact

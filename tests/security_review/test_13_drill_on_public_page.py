"""A drill is completed on /emergency/ like a real emergency: the owner types the address and
the code from the DRILL message; no new code is sent, the code is not counted as a failure, and
the session, its alerts and its review say DRILL."""

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from audit import sms
from audit.outbox import send_due_deliveries
from backups.models import EmergencyChallenge, EmergencySession
from review.models import Review
from tests.security_review.website_cast import (
    page_messages,
    run_action,
    texted_code,
)

pytestmark = pytest.mark.django_db


def test_the_owner_completes_a_drill_on_the_public_page(verified_client, bob, website):
    sms.outbox.clear()
    started = run_action(verified_client(bob), "start_drill", website)
    assert "drill code sent" in page_messages(started)
    code = texted_code()
    assert next(m for m in sms.outbox if code in m.body).body.startswith("DRILL")
    owner = Client()
    assert owner.post(reverse("emergency:start"), {"address": "example.org"})[
        "Location"] == reverse("emergency:verify")
    assert EmergencyChallenge.objects.count() == 1  # the drill's code, no second one
    assert owner.post(reverse("emergency:verify"), {"code": code})[
        "Location"] == reverse("emergency:session")
    website.refresh_from_db()
    assert website.consecutive_failures == 0
    session = EmergencySession.objects.get()
    assert session.is_drill
    page = owner.get(reverse("emergency:session"))
    assert b"DRILL" in page.content
    assert Review.objects.get(emergency_session=session).is_drill
    mail.outbox.clear()
    sms.outbox.clear()
    send_due_deliveries()
    verified_alerts = [m for m in mail.outbox if "verified" in m.subject.lower()
                       or "verified" in m.body.lower()]
    assert verified_alerts and all("DRILL" in m.subject + m.body for m in verified_alerts)
    assert any(m.body.startswith("Breakglass DRILL") for m in sms.outbox)


def test_a_real_request_after_a_used_drill_gets_a_new_code(verified_client, bob, website):
    run_action(verified_client(bob), "start_drill", website)
    owner = Client()
    owner.post(reverse("emergency:start"), {"address": "example.org"})
    owner.post(reverse("emergency:verify"), {"code": texted_code()})
    later = Client()
    later.post(reverse("emergency:start"), {"address": "example.org"})
    assert EmergencyChallenge.objects.filter(is_drill=False).count() == 1

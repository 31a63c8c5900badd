"""The public emergency page's codes (QUALITY Q1-Q6) and the narrow session a code opens."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from backups import services
from backups.models import EmergencyChallenge, EmergencySession
from tests.audit.test_no_secrets_leak import database_dump
from tests.conftest import example_website, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def website(db):
    return example_website(make_user("bob"), owner_name="Olga Owner")


def texted_code() -> str:
    """The code the owner reads from the SMS (the relay sends it, then redacts the body)."""
    send_due_deliveries()
    message = [m for m in sms.outbox if "emergency page" in m.body][-1]
    return re.search(r"\b(\d{8})\b", message.body).group(1)


def ask(client: Client, address: str = "example.org"):
    return client.post(reverse("emergency:start"), {"address": address})


def test_a_code_opens_a_session_for_that_website_only(client, website):
    sms.outbox.clear()
    assert ask(client, "https://Example.org/")["Location"] == reverse("emergency:verify")
    code = texted_code()
    assert len(code) == 8
    response = client.post(reverse("emergency:verify"), {"code": code})
    assert response["Location"] == reverse("emergency:session")
    page = client.get(reverse("emergency:session"))
    assert b"Backup of example.org" in page.content and b"Start backup" in page.content
    session = EmergencySession.objects.get()
    assert session.expires_at - session.started_at == timedelta(minutes=60)
    # The database never holds the code, only its keyed MAC (the SMS body is redacted once sent).
    assert code not in database_dump()
    # The session is no sign-in: every other page still asks for one.
    assert client.get(reverse("breakglass:catalog"))["Location"].startswith(
        reverse("accounts:login"))
    assert client.get("/admin/").status_code == 302


def test_a_code_is_single_use(client, website):
    ask(client)
    code = texted_code()
    nonce = client.session["emergency_challenge"]
    services.verify_code(nonce, code)
    with pytest.raises(services.VerificationFailed):
        services.verify_code(nonce, code)


def test_a_code_expires_after_ten_minutes_whatever_cleanup_did(client, website):
    ask(client)
    code = texted_code()
    EmergencyChallenge.objects.update(expires_at=timezone.now() - timedelta(milliseconds=1))
    response = client.post(reverse("emergency:verify"), {"code": code})
    assert response.status_code == 400 and b"no longer valid" in response.content
    assert not EmergencySession.objects.exists()


def test_five_wrong_tries_kill_a_code(client, website):
    ask(client)
    code = texted_code()
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    for _ in range(5):
        assert client.post(reverse("emergency:verify"), {"code": wrong}).status_code == 400
    assert client.post(reverse("emergency:verify"), {"code": code}).status_code == 400
    assert EmergencyChallenge.objects.get().wrong_tries == 5


def test_the_failure_count_survives_new_codes_and_locks_at_20(website):
    from django.core import mail

    nonces = []
    for round_ in range(4):  # four codes, 5 wrong tries each: 20 failures
        EmergencyChallenge.objects.update(created_at=timezone.now() - timedelta(days=2))
        nonces.append(services.send_code("example.org"))
        for _ in range(5):
            with pytest.raises(services.VerificationFailed):
                services.verify_code(nonces[-1], "00000000")
        website.refresh_from_db()
        assert website.consecutive_failures == 5 * (round_ + 1)
    assert website.locked_at is not None
    send_due_deliveries()
    assert any("locked" in m.body.lower() for m in mail.outbox if m.to == ["bob@example.com"])
    # Locked: no more codes, and even a right code would not open.
    EmergencyChallenge.objects.update(created_at=timezone.now() - timedelta(days=2))
    before = EmergencyChallenge.objects.count()
    services.send_code("example.org")
    assert EmergencyChallenge.objects.count() == before
    services.unlock(website, actor=website.manager)
    website.refresh_from_db()
    assert (website.locked_at, website.consecutive_failures) == (None, 0)


def test_a_success_resets_the_failure_count(client, website):
    ask(client)
    code = texted_code()
    with pytest.raises(services.VerificationFailed):
        services.verify_code(client.session["emergency_challenge"], "12345678"
                             if code != "12345678" else "87654321")
    services.verify_code(client.session["emergency_challenge"], code)
    website.refresh_from_db()
    assert website.consecutive_failures == 0


def test_sends_are_capped_at_3_per_15_minutes_and_10_per_day(website):
    for _ in range(5):
        services.send_code("example.org")
    assert EmergencyChallenge.objects.count() == 3
    for hours in range(1, 6):
        EmergencyChallenge.objects.filter(
            created_at__gt=timezone.now() - timedelta(minutes=15)).update(
            created_at=timezone.now() - timedelta(hours=hours))
        for _ in range(3):
            services.send_code("example.org")
    assert EmergencyChallenge.objects.filter(
        created_at__gt=timezone.now() - timedelta(days=1)).count() == 10
    # 5 + 15 asked, 10 sent: every other one refused and audited.
    assert AuditEvent.objects.filter(kind=EventKind.EMERGENCY_CODE_REFUSED).count() == 10


def normalized(response, address: str = "") -> str:
    """The page without its CSRF token and without the address the visitor typed (the verify
    page repeats it)."""
    text = response.content.decode()
    if address:
        text = text.replace(address, "ADDRESS")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", text)


def test_known_and_unknown_addresses_get_identical_answers(website):
    known, unknown = Client(), Client()
    first = (ask(known, "example.org"), ask(unknown, "no-such-site.example"))
    assert [r.status_code for r in first] == [302, 302]
    assert first[0]["Location"] == first[1]["Location"]
    assert set(first[0].cookies) == set(first[1].cookies)
    pages = (known.get(reverse("emergency:verify")), unknown.get(reverse("emergency:verify")))
    assert normalized(pages[0], "example.org") == normalized(pages[1], "no-such-site.example")
    answers = (known.post(reverse("emergency:verify"), {"code": "12345678"}),
               unknown.post(reverse("emergency:verify"), {"code": "12345678"}))
    assert normalized(answers[0], "example.org") == normalized(answers[1],
                                                             "no-such-site.example")


def test_disabled_websites_send_nothing(website):
    website.emergency_enabled = False
    website.save()
    services.send_code("example.org")
    assert not EmergencyChallenge.objects.exists()


def test_the_session_ends_with_its_window(client, website):
    ask(client)
    client.post(reverse("emergency:verify"), {"code": texted_code()})
    EmergencySession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("emergency:session"))
    assert response.status_code == 403 and b"ended" in response.content
    assert AuditEvent.objects.filter(kind=EventKind.EMERGENCY_SESSION_ENDED).count() == 1
    assert client.post(reverse("emergency:start-backup")).status_code == 403

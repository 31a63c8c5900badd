"""Defenders end emergency sessions: switching emergency access off, a lock-out, or the admin
action End emergency session ends every open session of the website at once (audited, the
contacts told); and every request of a session checks its website is still enabled."""

import pytest
from django.test import Client
from django.urls import reverse

from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from backups import services
from backups.models import EmergencyChallenge, EmergencySession, Website
from tests.conftest import example_website, make_user
from tests.security_review.website_cast import (
    administrator,
    change_website,
    open_emergency_session,
    run_action,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def website(db):
    return example_website(make_user("bob"))


def assert_refused_everywhere(client: Client) -> None:
    assert client.get(reverse("emergency:session")).status_code == 403
    assert client.post(reverse("emergency:start-backup")).status_code == 403
    assert client.get(reverse("emergency:download", args=[1])).status_code == 403


def assert_ended_by(actor_label: str, sessions: int = 1) -> None:
    assert not EmergencySession.objects.filter(ended_at__isnull=True).exists()
    ended = AuditEvent.objects.filter(kind=EventKind.EMERGENCY_SESSION_ENDED)
    assert ended.count() == sessions
    assert all(event.actor_label.startswith(actor_label) for event in ended)
    sms.outbox.clear()
    send_due_deliveries()
    assert any(m.to == "+15555550100" and "ended" in m.body for m in sms.outbox)


def test_switching_emergency_access_off_ends_the_open_sessions(verified_client, website):
    owner = open_emergency_session(Client())
    second = open_emergency_session(Client())
    response = change_website(verified_client(administrator("ada")), website,
                              emergency_enabled="")
    assert response.status_code == 302
    assert_refused_everywhere(owner)
    assert_refused_everywhere(second)
    assert_ended_by("ada", sessions=2)


def test_the_admin_action_ends_every_open_session(verified_client, website):
    owner = open_emergency_session(Client())
    run_action(verified_client(administrator("ada")), "end_emergency_sessions", website)
    assert_refused_everywhere(owner)
    assert_ended_by("ada")
    website.refresh_from_db()
    assert website.emergency_enabled  # ending sessions does not switch the flow off


def test_a_lock_out_ends_the_open_sessions(website):
    owner = open_emergency_session(Client())
    for _ in range(services.FAILURES_TO_LOCK // services.WRONG_TRIES_PER_CODE):
        EmergencyChallenge.objects.update(created_at="2000-01-01T00:00:00Z")
        nonce = services.send_code("example.org")
        for _ in range(services.WRONG_TRIES_PER_CODE):
            with pytest.raises(services.VerificationFailed):
                services.verify_code(nonce, "00000000")
    website.refresh_from_db()
    assert website.locked_at is not None
    assert_refused_everywhere(owner)
    assert_ended_by("system")


def test_a_session_checks_its_website_on_every_request(website):
    owner = open_emergency_session(Client())
    Website.objects.filter(pk=website.pk).update(emergency_enabled=False)
    assert owner.get(reverse("emergency:session")).status_code == 403
    assert EmergencySession.objects.get().ended_at is not None

"""A new website's first contacts are held for 24 hours like changed ones, and the manager named
at creation has no manager's powers, and the website sends no code, until a second
administrator confirms them."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from backups import services
from backups.models import EmergencyChallenge, Website
from tests.conftest import make_user
from tests.security_review.website_cast import (
    administrator,
    change_website,
    fresh_code,
    page_messages,
    run_action,
    website_form,
)

pytestmark = pytest.mark.django_db


def create_as_own_manager(client, creator) -> Website:
    response = client.post(reverse("admin:backups_website_add"), website_form(
        manager=creator.pk, verification_email="owner@example.org",
        verification_mobile="+15555550100", manager_code=fresh_code(creator)))
    assert response.status_code == 302, response.content[:2000]
    return Website.objects.get(address="example.org")


def test_first_contacts_are_held_like_changed_ones(db):
    website = Website.objects.create(name="Example", address="example.org",
                                     manager=make_user("bob"), emergency_enabled=True)
    services.change_contacts(website, email="owner@example.org", mobile="+15555550100",
                             actor=website.manager)
    website.refresh_from_db()
    assert website.contacts_hold_until > timezone.now() + timedelta(hours=23)
    services.send_code("example.org")
    assert not EmergencyChallenge.objects.exists()


def test_a_website_created_by_its_own_manager_sends_no_code(verified_client):
    ada = administrator("ada")
    website = create_as_own_manager(verified_client(ada), ada)
    assert website.contacts_hold_until > timezone.now() + timedelta(hours=23)
    assert not website.manager_confirmed
    services.approve_contacts(website, actor=administrator("carl"))  # contacts released
    services.send_code("example.org")
    assert not EmergencyChallenge.objects.exists()
    refused = AuditEvent.objects.filter(kind=EventKind.EMERGENCY_CODE_REFUSED).get()
    assert "second administrator" in refused.reason


def test_the_pending_manager_has_no_managers_powers(verified_client):
    ada = administrator("ada")
    client = verified_client(ada)
    website = create_as_own_manager(client, ada)
    drill = run_action(client, "start_drill", website)
    assert "confirm" in page_messages(drill)
    assert not EmergencyChallenge.objects.exists()
    contacts = change_website(client, website, verification_email="new@example.org",
                              manager_code=fresh_code(ada, 2))
    assert contacts.status_code == 200
    website.refresh_from_db()
    assert website.verification_email == "owner@example.org"
    Website.objects.filter(pk=website.pk).update(locked_at=timezone.now())
    run_action(client, "unlock", website)
    website.refresh_from_db()
    assert website.locked_at is not None


def test_the_creator_cannot_confirm_themselves(verified_client):
    ada = administrator("ada")
    client = verified_client(ada)
    website = create_as_own_manager(client, ada)
    response = run_action(client, "confirm_manager", website)
    assert "second administrator" in page_messages(response)
    website.refresh_from_db()
    assert not website.manager_confirmed


def test_a_second_administrator_confirms_and_everyone_concerned_is_told(verified_client):
    ada, carl = administrator("ada"), administrator("carl")
    website = create_as_own_manager(verified_client(ada), ada)
    created = AuditEvent.objects.get(kind=EventKind.WEBSITE_CREATED)
    assert created.actor_label.startswith("ada") and created.data["manager_confirmed"] is False
    mail.outbox.clear()
    carl_client = verified_client(carl)
    run_action(carl_client, "confirm_manager", website)
    run_action(carl_client, "approve_contacts", website)
    website.refresh_from_db()
    assert website.manager_confirmed and website.contacts_hold_until is None
    confirmed = AuditEvent.objects.get(kind=EventKind.MANAGER_CONFIRMED)
    assert confirmed.actor_label.startswith("carl")
    send_due_deliveries()
    told = {address for message in mail.outbox for address in message.to}
    assert {"ada@example.com", "owner@example.org"} <= told
    services.send_code("example.org")
    assert EmergencyChallenge.objects.count() == 1

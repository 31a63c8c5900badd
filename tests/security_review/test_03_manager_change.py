"""A website's manager changes only through change_manager: the current manager hands over with
a fresh code, anyone else's choice waits for a second administrator; the contacts are checked
against the manager in office, so manager and contacts never change in one save; the displaced
manager is told."""

import pytest
from django.core import mail

from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from backups import custody
from tests.security_review.website_cast import (
    administrator,
    change_website,
    fresh_code,
    page_messages,
    run_action,
)

pytestmark = pytest.mark.django_db


def test_manager_and_contacts_in_one_save_are_refused(verified_client, website):
    ada = administrator("ada")
    response = change_website(verified_client(ada), website, manager=ada.pk,
                              verification_email="ada@example.net",
                              manager_code=fresh_code(ada))
    assert response.status_code == 200
    assert b"separate" in response.content
    website.refresh_from_db()
    assert (website.manager_id, website.verification_email) != (ada.pk, "ada@example.net")
    assert website.verification_email == "owner@example.org"
    assert website.pending_manager is None


def test_another_administrator_naming_themselves_waits_for_a_second(verified_client, bob,
                                                                   website):
    ada, carl = administrator("ada"), administrator("carl")
    mail.outbox.clear()
    ada_client = verified_client(ada)
    assert change_website(ada_client, website, manager=ada.pk).status_code == 302
    website.refresh_from_db()
    assert website.manager == bob and website.pending_manager == ada
    send_due_deliveries()
    assert any("bob@example.com" in message.to for message in mail.outbox)
    assert "second administrator" in page_messages(
        run_action(ada_client, "confirm_manager", website))
    website.refresh_from_db()
    assert website.manager == bob
    run_action(verified_client(carl), "confirm_manager", website)
    website.refresh_from_db()
    assert website.manager == ada and website.pending_manager is None
    assert AuditEvent.objects.filter(kind=EventKind.MANAGER_CHANGED).count() == 1
    assert AuditEvent.objects.get(kind=EventKind.MANAGER_CONFIRMED).actor_label.startswith("carl")


def test_the_manager_hands_over_with_a_fresh_code_and_is_told(verified_client, bob, website):
    ada = administrator("ada")
    client = verified_client(bob)
    refused = change_website(client, website, manager=ada.pk)
    assert refused.status_code == 200 and b"fresh one-time code" in refused.content
    website.refresh_from_db()
    assert website.manager == bob and website.pending_manager is None
    mail.outbox.clear()
    assert change_website(client, website, manager=ada.pk,
                          manager_code=fresh_code(bob)).status_code == 302
    website.refresh_from_db()
    assert website.manager == ada and website.manager_confirmed
    event = AuditEvent.objects.get(kind=EventKind.MANAGER_CHANGED)
    assert event.data["previous_manager"] == bob.pk and event.data["confirmed"] is True
    send_due_deliveries()
    told = {address for message in mail.outbox for address in message.to}
    assert {"bob@example.com", "ada@example.com", "owner@example.org"} <= told


def test_change_manager_refuses_a_manager_who_did_not_prove_it(website):
    ada = administrator("ada")
    custody.change_manager(website, new_manager=ada, actor=website.manager)
    website.refresh_from_db()
    assert website.manager != ada and website.pending_manager == ada

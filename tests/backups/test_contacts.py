"""The verification contacts are the manager's alone: a fresh code to change them, both old and
new contacts told, and no code to the new ones for 24 hours unless a second administrator
approves."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from backups import services
from backups.models import EmergencyChallenge, Website
from tests.conftest import add_authenticator, current_totp, example_website, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(db):
    bob = make_user("bob", is_staff=True, is_superuser=True)
    add_authenticator(bob)
    return bob


@pytest.fixture
def website(manager):
    return example_website(manager)


def form(website, **changes) -> dict:
    data = {"name": website.name, "address": website.address, "manager": website.manager_id,
            "owner_name": "", "verification_email": website.verification_email,
            "verification_mobile": website.verification_mobile, "files_dir": "",
            "database_url": "", "manager_code": "", "emergency_enabled": "on",
            "emergency_minutes": 60, "retention_days": 7}
    data.update(changes)
    return data


def test_a_change_needs_the_managers_fresh_code(verified_client, manager, website):
    client = verified_client(manager)
    url = reverse("admin:backups_website_change", args=[website.pk])
    refused = client.post(url, form(website, verification_email="new@example.org"))
    assert refused.status_code == 200 and b"fresh one-time code" in refused.content
    website.refresh_from_db()
    assert website.verification_email == "owner@example.org"
    code = current_totp(manager.totpdevice_set.get(), steps_ahead=1)
    done = client.post(url, form(website, verification_email="new@example.org",
                                 manager_code=code))
    assert done.status_code == 302
    website.refresh_from_db()
    assert website.verification_email == "new@example.org"
    assert website.contacts_hold_until > timezone.now() + timedelta(hours=23)


def test_another_administrator_cannot_change_them(verified_client, admin_user, website):
    client = verified_client(admin_user)
    url = reverse("admin:backups_website_change", args=[website.pk])
    response = client.post(url, form(website, verification_mobile="+15555550199"))
    assert b"Only the website&#x27;s manager" in response.content
    website.refresh_from_db()
    assert website.verification_mobile == "+15555550100"


def test_both_contacts_are_told_and_the_new_ones_wait_24_hours(manager, website):
    sms.outbox.clear()
    services.change_contacts(website, email="new@example.org", mobile="+15555550199",
                             actor=manager)
    send_due_deliveries()
    told = {address for message in mail.outbox for address in message.to}
    assert {"owner@example.org", "new@example.org"} <= told
    assert {message.to for message in sms.outbox} >= {"+15555550100", "+15555550199"}
    services.send_code("example.org")
    assert not EmergencyChallenge.objects.exists()  # on hold
    refused = AuditEvent.objects.filter(kind=EventKind.EMERGENCY_CODE_REFUSED).get()
    assert "on hold" in refused.reason
    Website.objects.update(contacts_hold_until=timezone.now() - timedelta(seconds=1))
    services.send_code("example.org")
    assert EmergencyChallenge.objects.count() == 1


def test_a_second_administrator_releases_the_hold(manager, website, admin_user):
    services.change_contacts(website, email="new@example.org", mobile="", actor=manager)
    with pytest.raises(PermissionError):
        services.approve_contacts(website, actor=manager)  # not the one who changed them
    services.approve_contacts(website, actor=admin_user)
    website.refresh_from_db()
    assert website.contacts_hold_until is None
    services.send_code("example.org")
    assert EmergencyChallenge.objects.count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.CONTACTS_APPROVED).count() == 1

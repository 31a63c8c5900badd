"""Shared steps for the emergency-backup items: the website's admin form, admin actions, the
code the contacts read, and an emergency session opened through the public pages."""

import re

from django.test import Client
from django.urls import reverse

from audit import sms
from audit.outbox import send_due_deliveries
from backups.models import Website
from tests.conftest import add_authenticator, current_totp, make_user


def administrator(username: str):
    user = make_user(username, is_staff=True, is_superuser=True)
    add_authenticator(user)
    return user


def fresh_code(user, steps_ahead: int = 1) -> str:
    """A code the user's authenticator shows, not yet used (sign-in used the current step)."""
    return current_totp(user.totpdevice_set.get(), steps_ahead=steps_ahead)


def website_form(website: Website | None = None, **changes) -> dict:
    data = {"name": "Example", "address": "example.org", "manager": "", "owner_name": "",
            "verification_email": "", "verification_mobile": "", "files_dir": "",
            "database_url": "", "manager_code": "", "emergency_enabled": "on",
            "emergency_minutes": 60, "retention_days": 7}
    if website is not None:
        data.update(name=website.name, address=website.address, manager=website.manager_id,
                    owner_name=website.owner_name,
                    verification_email=website.verification_email,
                    verification_mobile=website.verification_mobile,
                    files_dir=website.files_dir,
                    emergency_enabled="on" if website.emergency_enabled else "",
                    emergency_minutes=website.emergency_minutes,
                    retention_days=website.retention_days)
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""
            or key not in ("emergency_enabled",)}


def change_website(client: Client, website: Website, **changes):
    url = reverse("admin:backups_website_change", args=[website.pk])
    return client.post(url, website_form(website, **changes))


def run_action(client: Client, action: str, website: Website):
    return client.post(reverse("admin:backups_website_changelist"),
                       {"action": action, "_selected_action": [website.pk]}, follow=True)


def page_messages(response) -> str:
    return " ".join(str(message) for message in response.context["messages"])


def texted_code(mobile: str = "+15555550100") -> str:
    """The code the contact reads in the latest code SMS to `mobile`."""
    send_due_deliveries()
    message = [m for m in sms.outbox if m.to == mobile and "Breakglass code" in m.body][-1]
    return re.search(r"\b(\d{8})\b", message.body).group(1)


def open_emergency_session(client: Client, address: str = "example.org") -> Client:
    """The owner's way in: the address, then the code from the SMS."""
    sms.outbox.clear()
    assert client.post(reverse("emergency:start"), {"address": address}).status_code == 302
    response = client.post(reverse("emergency:verify"), {"code": texted_code()})
    assert response.status_code == 302, response.content[:300]
    assert client.get(reverse("emergency:session")).status_code == 200
    return client

"""SIEM streams in the admin: every change audited and kept in the history with the staff
member who made it; the bearer token write-only and stored encrypted; progress read-only."""

import pytest
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from recovery.crypto import decrypt_field
from siem.models import SiemStream
from tests.siem.conftest import head, write_events

pytestmark = pytest.mark.django_db

TOKEN = "siem-admin-token-" + "7" * 30


@pytest.fixture
def admin_client(verified_client, admin_user):
    return verified_client(admin_user)


def stream_form(**fields) -> dict:
    return {"name": "splunk", "kind": "jsonl_http", "address": "https://siem.example.org/in",
            "enabled": "on", "start_from": "now", "bearer_token": TOKEN, "_save": "Save",
            **fields}


def test_a_new_stream_is_audited_and_its_token_never_shown_again(admin_client, admin_user):
    write_events(5, actor=admin_user)
    chain_head = head()
    response = admin_client.post(reverse("admin:siem_siemstream_add"), stream_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    stream = SiemStream.objects.get()
    assert decrypt_field(stream.bearer_token_encrypted) == TOKEN
    assert stream.sent_through == chain_head  # from now: the head when it was made
    event = AuditEvent.objects.filter(kind=EventKind.SIEM_STREAM_CHANGED).get()
    assert event.actor_id == str(admin_user.pk) and event.data["created"] is True
    assert "bearer_token" in event.data["changed"] and TOKEN not in str(event.data)
    assert stream.history.get().history_user == admin_user
    page = admin_client.get(reverse("admin:siem_siemstream_change", args=[stream.pk]))
    assert page.status_code == 200 and b"Behind the chain by" in page.content
    assert TOKEN.encode() not in page.content
    assert stream.bearer_token_encrypted.encode() not in page.content


def test_pausing_a_stream_is_audited_with_before_and_after(admin_client):
    admin_client.post(reverse("admin:siem_siemstream_add"), stream_form())
    stream = SiemStream.objects.get()
    response = admin_client.post(
        reverse("admin:siem_siemstream_change", args=[stream.pk]),
        {**stream_form(bearer_token=""), "enabled": ""})
    assert response.status_code == 302, response.context["adminform"].form.errors
    stream.refresh_from_db()
    assert stream.enabled is False
    assert decrypt_field(stream.bearer_token_encrypted) == TOKEN  # kept when left empty
    change = AuditEvent.objects.filter(kind=EventKind.SIEM_STREAM_CHANGED).first()
    assert change.data["changed"] == ["enabled"]
    assert (change.data["before"]["enabled"], change.data["after"]["enabled"]) == (True, False)


@pytest.mark.parametrize(("fields", "error"), [
    ({"address": "http://siem.example.org/in"}, "plain http://"),
    ({"address": "https://user:pw@siem.example.org/in"}, "bearer token, not the URL"),
    ({"kind": "syslog", "address": "siem.example.org", "bearer_token": ""}, "host:port"),
    ({"kind": "syslog", "address": "siem.example.org:6514"}, "Only an HTTP stream"),
    ({"kind": "jsonl_file", "address": "relative/trail.jsonl", "bearer_token": ""},
     "absolute path"),
    ({"kind": "jsonl_file", "address": "/var/trail.jsonl", "tls": "on", "bearer_token": ""},
     "TLS is a syslog setting"),
])
def test_a_destination_that_could_not_work_is_refused(admin_client, fields, error):
    response = admin_client.post(reverse("admin:siem_siemstream_add"), stream_form(**fields))
    assert response.status_code == 200
    assert error in str(response.context["adminform"].form.errors)
    assert not SiemStream.objects.exists()


def test_deleting_a_stream_is_audited(admin_client):
    admin_client.post(reverse("admin:siem_siemstream_add"), stream_form())
    stream = SiemStream.objects.get()
    response = admin_client.post(reverse("admin:siem_siemstream_delete", args=[stream.pk]),
                                 {"post": "yes"})
    assert response.status_code == 302
    assert not SiemStream.objects.exists()
    assert AuditEvent.objects.filter(kind=EventKind.SIEM_STREAM_CHANGED).first().data[
        "deleted"] is True

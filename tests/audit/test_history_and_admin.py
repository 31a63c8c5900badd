import pytest
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.services import record
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def change_user(client, user, **changes):
    url = reverse("admin:accounts_user_change", args=[user.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.pop("last_login", None)
    data.pop("date_joined", None)
    data.update({"date_joined_0": "2026-01-01", "date_joined_1": "00:00:00", "groups": [],
                 "user_permissions": [], **changes})
    return client.post(url, data)


def test_a_contact_change_in_the_admin_writes_one_history_row_with_the_admin(
    verified_client, admin_user, member
):
    client = verified_client(admin_user)
    before = member.history.count()
    response = change_user(client, member, mobile="+447700900123")
    assert response.status_code == 302
    rows = member.history.all()[: member.history.count() - before]
    assert len(rows) == 1
    assert rows[0].mobile == "+447700900123" and rows[0].history_user == admin_user
    page = client.get(reverse("admin:accounts_user_history", args=[member.pk]))
    assert page.status_code == 200 and b"+447700900123" in page.content


def test_signing_in_is_not_a_configuration_change(client, member):
    before = member.history.count()
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    member.refresh_from_db()
    assert member.last_login is not None
    assert member.history.count() == before


def test_the_audit_trail_is_read_only_in_the_admin_even_for_superusers(
    verified_client, admin_user
):
    client = verified_client(admin_user)
    event = record(EventKind.CHAIN_BROKEN, actor=None, reason="drill")
    changelist = client.get(reverse("admin:audit_auditevent_changelist"))
    assert changelist.status_code == 200
    assert b"Audit chain:" in changelist.content and b"not verified yet" in changelist.content
    detail = client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    assert detail.status_code == 200 and b"Save" not in detail.content
    assert client.post(reverse("admin:audit_auditevent_change", args=[event.pk]),
                       {"reason": "edited"}).status_code == 403
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]),
                       {"post": "yes"}).status_code == 403
    event.refresh_from_db()
    assert event.reason == "drill"


def test_the_chain_status_line_shows_the_last_verification(
    verified_client, admin_user, settings, tmp_path
):
    from audit.services import write_checkpoint

    settings.CHECKPOINT_DIR = tmp_path
    client = verified_client(admin_user)
    write_checkpoint()
    page = client.get(reverse("admin:audit_auditevent_changelist"))
    assert b"Audit chain intact:" in page.content


def test_retry_now_is_an_admin_action_on_deliveries(verified_client, admin_user, reviewer):
    from django.db import transaction

    from audit.alerts import alert

    with transaction.atomic():
        event = record(EventKind.LOCKOUT, actor=None)
        alert(event, users=[reviewer], channels=["email"])
    Delivery.objects.update(status=Delivery.Status.FAILED)
    client = verified_client(admin_user)
    response = client.post(reverse("admin:audit_delivery_changelist"), {
        "action": "retry_now", "_selected_action": [d.pk for d in Delivery.objects.all()]})
    assert response.status_code == 302
    assert Delivery.objects.get().status == Delivery.Status.PENDING
    assert AuditEvent.objects.filter(kind=EventKind.DELIVERY_RETRIED).count() == 1

"""Connectors in the admin: write-only secrets (encrypted, never shown again), the kind's own
checks, the Test connection and Reconcile now buttons answering in plain words, history, and
refusal (audited) for staff without the right to change connectors."""

import pytest
from django.contrib.auth.models import Permission

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.connectors.base import secret
from breakglass.models import Connector
from breakglass.services import connectors
from tests.conftest import add_authenticator, make_user

pytestmark = pytest.mark.django_db


def form_data(database, **fields) -> dict:
    return {"name": "prod-admin", "group": database.pk, "kind": "postgres_role",
            "target_name": "admin_role", "options": "{}", "logins": "username",
            "mode": "repair", "enabled": "on", "secret_version": 1, "url": "",
            "login_set-TOTAL_FORMS": 0, "login_set-INITIAL_FORMS": 0, **fields}


def test_the_admin_stores_the_server_url_encrypted_and_tests_it_in_plain_words(
        admin_user, verified_client, database, postgres_target):
    postgres_target.prepare_target("admin_role")
    client = verified_client(admin_user)
    response = client.post("/admin/breakglass/connector/add/",
                           form_data(database, server_url=postgres_target.url()))
    assert response.status_code == 302, response.content.decode()[:3000]
    connector = Connector.objects.get()
    assert secret(connector, "server_url") == postgres_target.url()
    page = client.get(f"/admin/breakglass/connector/{connector.pk}/change/").content.decode()
    assert postgres_target.url() not in page and "connector-test" in page
    tested = client.post(f"/admin/breakglass/connector/{connector.pk}/test/", follow=True)
    assert "Connected to PostgreSQL" in tested.content.decode()
    assert AuditEvent.objects.get(kind=EventKind.CONNECTOR_CHECKED).outcome == "success"
    reconciled = client.post(f"/admin/breakglass/connector/{connector.pk}/reconcile/",
                             follow=True).content.decode()
    assert "0 present, 0 with access" in reconciled
    # Saved again with the secret left empty: the stored one stays.
    client.post(f"/admin/breakglass/connector/{connector.pk}/change/",
                form_data(database, target_name="admin_role", mode="report"))
    connector.refresh_from_db()
    assert connector.mode == "report" and secret(connector, "server_url") == postgres_target.url()
    assert connector.history.count() == 2


def test_the_kinds_own_checks_refuse_a_bad_setting(admin_user, verified_client, database):
    client = verified_client(admin_user)
    response = client.post("/admin/breakglass/connector/add/",
                           form_data(database, server_url="mysql://h/db"))
    assert response.status_code == 200
    assert "url: give postgres://" in response.content.decode()
    assert not Connector.objects.exists()


def test_staff_without_the_right_cannot_test_or_reconcile(verified_client, database,
                                                          postgres_target):
    postgres_target.prepare_target("admin_role")
    connector = connectors.create_connector("postgres_role", "prod-admin", database,
                                            postgres_target.settings("admin_role"), actor=None)
    viewer = make_user("vera", is_staff=True)
    add_authenticator(viewer)
    viewer.user_permissions.add(Permission.objects.get(codename="view_connector"))
    client = verified_client(viewer)
    assert client.post(f"/admin/breakglass/connector/{connector.pk}/test/").status_code == 403
    assert client.post(
        f"/admin/breakglass/connector/{connector.pk}/reconcile/").status_code == 403
    assert AuditEvent.objects.filter(kind=EventKind.ADMIN_ACTION_REFUSED).count() == 2
    assert not AuditEvent.objects.filter(kind=EventKind.CONNECTOR_CHECKED).exists()


def test_the_dashboard_shows_each_connectors_health_and_pending_revocations(
        admin_user, verified_client, database, member, postgres_target):
    from breakglass.models import ConnectorMembership
    from breakglass.services.connectors import ask

    postgres_target.prepare_target("admin_role")
    connector = connectors.create_connector("postgres_role", "prod-admin", database,
                                            postgres_target.settings("admin_role"), actor=None)
    connectors.reconcile(connector)
    ask(connector, member, wanted=False)  # a revocation the target has not confirmed yet
    assert ConnectorMembership.objects.get().revocation_pending
    page = verified_client(admin_user).get("/admin/dashboard/").content.decode()
    row = page[page.index('id="connectors"'):page.index('id="drills"')]
    assert "prod-admin" in row and "Working" in row and "badge--red\">1<" in row

"""Faults found in review, each shown on a real target: reconciliation never undoes a
revocation that lands while it runs, never confirms an ask it did not see, survives a driver's
own errors; a revocation removes the login that was granted; a pending revocation clears when
access comes back another way; an LDAP login given as a DN does not flap; admins of a
PostgreSQL role are not its members; the admin's options are read like the command's."""

import itertools

import pytest
from django.core.management import call_command

from audit.outbox import send_due_deliveries
from breakglass.connectors.postgres_role import PostgresRoleTarget
from breakglass.models import Connector, ConnectorLogin, ConnectorMembership
from breakglass.services import connectors
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import revoke_grant

pytestmark = pytest.mark.django_db
_roles = itertools.count(1)


def relay() -> None:
    while send_due_deliveries():
        pass


@pytest.fixture
def pg_connector(postgres_target, database, member):
    """A role of the test's own on the shared server (roles outlive a test's database)."""
    role = f"fault_role_{next(_roles)}"
    postgres_target.prepare_target(role)
    postgres_target.create_login(member.username)
    return connectors.create_connector("postgres_role", "faults", database,
                                       postgres_target.settings(role), actor=None)


def test_reconcile_decides_again_before_granting(pg_connector, postgres_target, member,
                                                 monkeypatch):
    # The holders were read while mark still had access; his grant ended before the repair.
    monkeypatch.setattr(connectors.sql, "holders_of",
                        lambda group_id, at: {member.pk: member.username})
    result = connectors.reconcile(pg_connector)
    assert result.missing == [member.username] and result.granted == []
    assert member.username not in postgres_target.members_by_hand(pg_connector.target_name)


def test_a_drivers_own_error_marks_the_connector_failing(pg_connector, monkeypatch):
    def broken(self):
        raise RuntimeError("the driver fell over")

    monkeypatch.setattr(PostgresRoleTarget, "members", broken)
    results = connectors.reconcile_all()
    assert "RuntimeError: the driver fell over" in results[0].problem
    pg_connector.refresh_from_db()
    assert pg_connector.health == Connector.Health.FAILING


def test_an_ask_made_while_the_target_was_listed_stays_pending(pg_connector, postgres_target,
                                                               member, monkeypatch):
    listed = PostgresRoleTarget.members

    def listing_then_a_grant_and_its_revocation(self):
        found = listed(self)
        postgres_target.add_by_hand(pg_connector.target_name, member.username)  # the relay's grant
        connectors.ask(pg_connector, member, wanted=False)  # ... and the revocation after it
        return found

    monkeypatch.setattr(PostgresRoleTarget, "members", listing_then_a_grant_and_its_revocation)
    connectors.reconcile(pg_connector)
    assert ConnectorMembership.objects.get(user=member).revocation_pending
    monkeypatch.setattr(PostgresRoleTarget, "members", listed)
    connectors.reconcile(pg_connector)  # this listing sees him: the revocation is done now
    assert member.username not in postgres_target.members_by_hand(pg_connector.target_name)
    assert not ConnectorMembership.objects.get(user=member).revocation_pending


def test_a_revocation_removes_the_login_that_was_granted(pg_connector, postgres_target,
                                                          database, member):
    for login in ("mark_old", "mark_new"):
        postgres_target.create_login(login)
    login = ConnectorLogin.objects.create(connector=pg_connector, user=member, login="mark_old")
    grant = break_glass(database, actor=member, reason="r")
    relay()
    assert "mark_old" in postgres_target.members_by_hand(pg_connector.target_name)
    login.login = "mark_new"  # an administrator corrects the mapping while access lasts
    login.save()
    revoke_grant(grant, actor=member)
    relay()
    left = postgres_target.members_by_hand(pg_connector.target_name)
    assert left & {"mark_old", "mark_new"} == set()
    assert not ConnectorMembership.objects.get(user=member).revocation_pending


def test_a_pending_revocation_clears_when_access_comes_back_another_way(
        pg_connector, postgres_target, database, member):
    break_glass(database, actor=member, reason="r")
    relay()
    connectors.ask(pg_connector, member, wanted=False)  # a revocation not carried out yet
    database.members.add(member)  # ... and mark became a permanent member meanwhile
    connectors.reconcile(pg_connector)
    membership = ConnectorMembership.objects.get(user=member)
    assert (membership.wanted, membership.applied) == (True, True)
    assert member.username in postgres_target.members_by_hand(pg_connector.target_name)


def test_an_administrator_of_the_role_is_not_a_member(pg_connector, postgres_target):
    from psycopg import sql

    postgres_target.create_login("role_admin")
    with postgres_target.admin() as admin:
        admin.execute(sql.SQL("GRANT {} TO role_admin WITH ADMIN OPTION").format(
            sql.Identifier(pg_connector.target_name)))
    with connectors.target_for(pg_connector) as target:
        assert "role_admin" not in target.members()


def test_an_ldap_login_given_as_a_dn_does_not_flap(ldap_server, database, member):
    target = ldap_server.target_for("dn_logins")
    ldap_server.prepare_target(target)
    ldap_server.create_login(member.username)
    connector = connectors.create_connector("ldap_group", "dn-logins", database,
                                            ldap_server.settings(target), actor=None)
    ConnectorLogin.objects.create(connector=connector, user=member,
                                  login="UID=mark, ou=people,dc=example,dc=org")
    break_glass(database, actor=member, reason="r")
    relay()
    first, second = connectors.reconcile(connector), connectors.reconcile(connector)
    assert (first.missing, first.extra, second.missing, second.extra) == ([], [], [], [])
    assert member.username in ldap_server.members_by_hand(target)


def test_admin_options_are_read_like_the_commands(admin_user, verified_client, database,
                                                  postgres_target):
    postgres_target.prepare_target("fault_role")
    form = {"name": "opts", "group": database.pk, "kind": "postgres_role",
            "target_name": "fault_role", "logins": "username", "mode": "repair",
            "enabled": "on", "secret_version": 1, "url": "",
            "server_url": postgres_target.url(),
            "login_set-TOTAL_FORMS": 0, "login_set-INITIAL_FORMS": 0}
    client = verified_client(admin_user)
    refused = client.post("/admin/breakglass/connector/add/",
                          {**form, "options": '{"colour": "blue"}'})
    assert "colour is not an option of a postgres_role connector" in refused.content.decode()
    client.post("/admin/breakglass/connector/add/",
                {**form, "options": '{"ignore_logins": "svc_backup, svc_monitor"}'})
    assert Connector.objects.get().options == {"ignore_logins": ["svc_backup", "svc_monitor"]}


def test_the_command_creates_webhook_and_django_group_connectors(database, capsys):
    from django.contrib.auth.models import Group as AuthGroup

    AuthGroup.objects.create(name="deployers")
    call_command("create_connector", "webhook", "hook", "--group", "prod-db", "--no-check",
                 "--option", "url=https://hooks.example.org/breakglass")
    call_command("create_connector", "django_group", "deploy", "--group", "prod-db",
                 "--no-check", "--option", "django_group=deployers")
    assert Connector.objects.get(name="hook").url == "https://hooks.example.org/breakglass"
    assert Connector.objects.get(name="deploy").django_group.name == "deployers"


def test_a_grant_past_its_instant_is_revoked_as_its_expiry_not_as_drift(pg_connector,
                                                                        postgres_target,
                                                                        database, member):
    from datetime import timedelta

    from django.utils import timezone

    from audit.catalogue import EventKind
    from audit.models import AuditEvent
    from breakglass.models import Grant

    break_glass(database, actor=member, reason="r")
    relay()
    # Access ended at its instant; no worker has recorded the expiry yet.
    Grant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    result = connectors.reconcile(pg_connector)
    assert result.revoked == [member.username]
    assert member.username not in postgres_target.members_by_hand(pg_connector.target_name)
    assert not AuditEvent.objects.filter(kind=EventKind.CONNECTOR_DRIFT).exists()

"""`manage.py create_connector KIND NAME --group SLUG --option key=value …`: prints the id,
tests the connection, refuses bad options in one line naming the option, keeps secrets
encrypted and out of the audit trail."""

import pytest
from django.core.management import CommandError, call_command

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Connector

pytestmark = pytest.mark.django_db


def create(capsys, *args) -> tuple[str, str]:
    call_command("create_connector", *args)
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_a_postgres_connector_is_created_tested_and_its_id_printed(capsys, postgres_target,
                                                                    database, monkeypatch):
    postgres_target.prepare_target("cmd_role")
    monkeypatch.setenv("TARGET_URL", postgres_target.url())
    out, err = create(capsys, "postgres_role", "prod-admin", "--group", "prod-db",
                      "--option", "url=env:TARGET_URL", "--option", "role=cmd_role",
                      "--option", "ignore_logins=backup_agent, monitor")
    connector = Connector.objects.get(name="prod-admin")
    assert out.strip() == str(connector.pk)
    assert "connection test: Connected to PostgreSQL" in err
    assert connector.options == {"ignore_logins": ["backup_agent", "monitor"]}
    assert connector.health == Connector.Health.OK
    password = postgres_target.url().split(":")[2].split("@")[0]
    assert password not in connector.server_url_encrypted
    created = AuditEvent.objects.get(kind=EventKind.CONNECTOR_CREATED)
    assert created.data["settings"] == {"role": "cmd_role",
                                        "ignore_logins": "backup_agent, monitor"}
    assert password not in str(AuditEvent.objects.values_list("data", "reason"))


def test_a_failing_connection_test_exits_3_after_creating(capsys, postgres_target, database):
    with pytest.raises(SystemExit) as exit_status:
        create(capsys, "postgres_role", "ghost", "--group", "prod-db", "--option",
               f"url={postgres_target.url()}", "--option", "role=no_such_role")
    assert exit_status.value.code == 3
    err = capsys.readouterr().err
    assert "the role 'no_such_role' does not exist" in err
    assert Connector.objects.get(name="ghost").health == Connector.Health.FAILING


@pytest.mark.parametrize(("options", "message"), [
    (["role=x"], "option url: required for a postgres_role connector"),
    (["url=postgres://h/db", "role=x", "colour=blue"],
     "option colour: not a setting of a postgres_role connector"),
    (["url=mysql://h/db", "role=x"], "option url: give postgres://"),
    (["url=postgres://h/db", "role=x", "mode=sometimes"], "option mode: give one of repair"),
    (["url=postgres://h/db", "role=" + "r" * 64], "option role: the role"),
    (["url=env:NOT_SET_ANYWHERE", "role=x"], "option url: the environment has no"),
    (["url"], "option 'url': give KEY=VALUE"),
])
def test_bad_options_are_refused_in_one_line_naming_the_option(database, options, message):
    args = ["postgres_role", "bad", "--group", "prod-db"]
    for option in options:
        args += ["--option", option]
    with pytest.raises(CommandError) as refused:
        call_command("create_connector", *args)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert not Connector.objects.exists()


def test_an_unknown_group_is_refused(db):
    with pytest.raises(CommandError, match="--group: no catalog group with slug 'nope'"):
        call_command("create_connector", "webhook", "hook", "--group", "nope", "--option",
                     "url=https://example.org/hook")


def test_help_lists_a_kinds_settings(capsys, db):
    out, _ = create(capsys, "ldap_group", "x", "--group", "any", "--option", "help=1")
    assert "group_dn (required)" in out and "bind_password (required)" in out


@pytest.fixture
def explicit_connector(postgres_target, database):
    from breakglass.services import connectors

    postgres_target.prepare_target("explicit_role")
    return connectors.create_connector(
        "postgres_role", "explicit-logins", database,
        {**postgres_target.settings("explicit_role"), "logins": "explicit"}, actor=None)


def test_the_break_glass_page_says_which_login_is_missing(explicit_connector, member,
                                                          verified_client):
    response = verified_client(member).post("/catalog/prod-db/break-glass/",
                                            {"reason": "disk full"})
    assert response.status_code == 403
    assert ("mark has no login set on explicit-logins (PostgreSQL role explicit_role)"
            in response.content.decode())


def test_a_request_and_its_approval_are_refused_without_a_login(explicit_connector, database,
                                                                member, owner):
    from breakglass.models import ConnectorLogin
    from breakglass.services.errors import NotAllowed, RequestRefused
    from breakglass.services.requests import approve_request, request_access

    database.requestable = True
    database.save()
    with pytest.raises(RequestRefused, match="mark has no login set on explicit-logins"):
        request_access(database, actor=member, minutes=60, reason="r")
    login = ConnectorLogin.objects.create(connector=explicit_connector, user=member,
                                          login="mark_db")
    pending = request_access(database, actor=member, minutes=60, reason="r")
    login.delete()  # removed while the request waited
    with pytest.raises(NotAllowed, match="mark has no login set on explicit-logins"):
        approve_request(pending, actor=owner)
    pending.refresh_from_db()
    assert pending.status == "pending" and pending.grant.status == "requested"

"""The MariaDB role connector against a real, throwaway MariaDB server (mariadb_server.py).
Every test uses names of its own, so tests never see each other's roles and logins."""

import copy
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.outbox import DeliveryError
from breakglass.connectors.base import ConnectorProblem, Settings
from breakglass.connectors.mariadb_role import MariaDBRoleTarget
from breakglass.models import Connector
from breakglass.services.connectors import parse_settings
from recovery.crypto import encrypt_field
from tests.connectors.mariadb_server import account, quote_identifier

_numbers = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_numbers)}"


def target_on(server, role: str, **options: str) -> MariaDBRoleTarget:
    """A target built as `create_connector --option ...` would build it."""
    parsed = parse_settings(server.kind, {**server.settings(role), **options})
    return MariaDBRoleTarget(Connector(
        name="mariadb-test", kind=server.kind, target_name=parsed.target_name,
        options=parsed.options, server_url_encrypted=encrypt_field(parsed.secrets["server_url"])))


@pytest.fixture
def role_and_login(mariadb_server):
    role, login = unique("role"), unique("login")
    mariadb_server.prepare_target(role)
    mariadb_server.create_login(login)
    return role, login


# --- grant and revoke ----------------------------------------------------------------------

def test_grant_makes_the_login_a_member_and_revoke_removes_it(mariadb_server, role_and_login):
    role, login = role_and_login
    with target_on(mariadb_server, role) as target:
        target.grant(login)
        assert mariadb_server.members_by_hand(role) == {login}
        target.grant(login)
        assert mariadb_server.members_by_hand(role) == {login}

        assert target.revoke(login).endswith(":revoked")
        assert mariadb_server.members_by_hand(role) == set()
        assert target.revoke(login).endswith(":absent")
        assert mariadb_server.members_by_hand(role) == set()


def test_grant_makes_the_role_the_default_and_revoke_clears_it(mariadb_server, role_and_login):
    role, login = role_and_login
    with target_on(mariadb_server, role) as target:
        target.grant(login)
        assert mariadb_server.default_role(login) == role
        target.revoke(login)
    assert mariadb_server.default_role(login) == ""


def test_revoke_clears_a_default_role_left_behind_without_membership(mariadb_server,
                                                                      role_and_login):
    role, login = role_and_login
    mariadb_server.add_by_hand(role, login)
    mariadb_server.execute(f"SET DEFAULT ROLE {quote_identifier(role)} FOR {account(login)}")
    mariadb_server.execute(f"REVOKE {quote_identifier(role)} FROM {account(login)}")
    assert mariadb_server.default_role(login) == role  # MariaDB's REVOKE leaves it

    with target_on(mariadb_server, role) as target:
        target.revoke(login)
    assert mariadb_server.default_role(login) == ""


def test_without_default_role_the_login_default_is_left_alone(mariadb_server, role_and_login):
    role, login = role_and_login
    with target_on(mariadb_server, role, default_role="false") as target:
        target.grant(login)
        assert mariadb_server.members_by_hand(role) == {login}
        assert mariadb_server.default_role(login) == ""


def test_grant_to_another_host_part(mariadb_server):
    role, login = unique("role"), unique("login")
    mariadb_server.prepare_target(role)
    mariadb_server.execute(f"CREATE USER {account(login, '10.0.0.%')}")
    everywhere = unique("login")
    mariadb_server.create_login(everywhere)
    mariadb_server.add_by_hand(role, everywhere)
    with target_on(mariadb_server, role, user_host="10.0.0.%") as target:
        target.grant(login)
        assert target.members() == {login}
    assert mariadb_server.members_by_hand(role) == {everywhere}  # the '%' accounts


def test_members_match_the_server_after_a_grant_by_hand(mariadb_server, role_and_login):
    role, login = role_and_login
    other = unique("login")
    mariadb_server.create_login(other)
    with target_on(mariadb_server, role) as target:
        target.grant(login)
        mariadb_server.add_by_hand(role, other)
        assert target.members() == mariadb_server.members_by_hand(role) == {login, other}


def test_members_leave_out_the_accounts_that_administer_the_role(mariadb_server,
                                                                  role_and_login):
    role, _ = role_and_login
    with target_on(mariadb_server, role) as target:
        assert target.members() == set()  # breakglass_admin holds it WITH ADMIN OPTION


# --- check ---------------------------------------------------------------------------------

def test_check_says_the_target_is_ready(mariadb_server, role_and_login):
    role, login = role_and_login
    mariadb_server.add_by_hand(role, login)
    with target_on(mariadb_server, role) as target:
        answer = target.check()
    assert "Connected as 'breakglass_admin'@'%'" in answer
    assert "MariaDB 1" in answer
    assert f"The role {role!r} exists with 1 member among" in answer


def test_check_says_the_role_does_not_exist(mariadb_server):
    with target_on(mariadb_server, "no_such_role") as target, \
            pytest.raises(ConnectorProblem, match="the role 'no_such_role' does not exist on "
                          r"127\.0\.0\.1:\d+ \(MariaDB 1"):
        target.check()


def test_check_names_the_rights_the_account_lacks(mariadb_server, role_and_login):
    role, _ = role_and_login
    user = unique("weak")
    url = mariadb_server.create_account(user, "weak password",
                                        "GRANT SELECT ON mysql.* TO {account}")
    with target_on(mariadb_server, role, url=url) as target, \
            pytest.raises(ConnectorProblem) as problem:
        target.check()
    message = str(problem.value)
    assert f"connected as '{user}'@'%' to 127.0.0.1:" in message
    assert f"lacks the role {role!r} WITH ADMIN OPTION" in message
    assert "UPDATE on the mysql database" in message
    assert "SELECT on the mysql database" not in message


def test_check_says_the_account_cannot_read_members(mariadb_server, role_and_login):
    role, _ = role_and_login
    user = unique("blind")
    url = mariadb_server.create_account(
        user, "blind password",
        f"GRANT {quote_identifier(role)} TO {{account}} WITH ADMIN OPTION")
    with target_on(mariadb_server, role, url=url, default_role="false") as target, \
            pytest.raises(ConnectorProblem, match="lacks SELECT on the mysql database"):
        target.check()


# --- failures ------------------------------------------------------------------------------

def test_unknown_login_is_refused_for_good(mariadb_server, role_and_login):
    role, _ = role_and_login
    with target_on(mariadb_server, role) as target, pytest.raises(DeliveryError) as failure:
        target.grant("nobody_here")
    assert not failure.value.retryable
    assert "the login 'nobody_here'@'%' does not exist on 127.0.0.1:" in str(failure.value)


def test_unknown_role_is_refused_for_good(mariadb_server, role_and_login):
    _, login = role_and_login
    with target_on(mariadb_server, "no_such_role") as target, \
            pytest.raises(DeliveryError, match="the role 'no_such_role' does not exist") as failure:
        target.grant(login)
    assert not failure.value.retryable


def test_revoking_from_an_unknown_login_succeeds(mariadb_server, role_and_login):
    role, _ = role_and_login
    with target_on(mariadb_server, role) as target:
        assert target.revoke("nobody_here").endswith(":absent")


def test_grant_never_creates_a_missing_login(mariadb_server, role_and_login):
    """Without NO_AUTO_CREATE_USER in its sql_mode, MariaDB's GRANT would create the login
    with no password; the connector sets the mode for its own session."""
    role, _ = role_and_login
    (global_mode,), = mariadb_server.execute("SELECT @@GLOBAL.sql_mode")
    mariadb_server.execute("SET GLOBAL sql_mode = ''")
    try:
        with target_on(mariadb_server, role) as target, pytest.raises(DeliveryError):
            target.grant("would_be_created")
    finally:
        mariadb_server.execute("SET GLOBAL sql_mode = %s", [global_mode])
    assert "would_be_created" not in mariadb_server.roles()


def test_wrong_password_is_refused_for_good(mariadb_server, role_and_login):
    role, login = role_and_login
    url = mariadb_server.url.replace("breakglass_admin:", "breakglass_admin:x")
    with target_on(mariadb_server, role, url=url) as target, \
            pytest.raises(DeliveryError) as failure:
        target.grant(login)
    assert not failure.value.retryable
    assert "refused the connecting account" in str(failure.value)
    assert "password" not in str(failure.value).replace("using password: YES", "")


@pytest.mark.parametrize(("suffix", "as_the_server_would_read_it"), [
    (" ", ""),  # CHAR columns drop trailing spaces
    ("\N{GRINNING FACE}", "?"),  # utf8mb3 grant tables turn it into '?'
    ("\x00tail", ""),
    ("x" * 120, "x" * 113),  # 129 characters in all, one more than MariaDB takes
])
def test_names_the_server_cannot_hold_are_refused(mariadb_server, role_and_login, suffix,
                                                  as_the_server_would_read_it):
    role, _ = role_and_login
    base = unique("look")
    lookalike = base + as_the_server_would_read_it
    mariadb_server.create_login(lookalike)
    before = mariadb_server.snapshot()
    with target_on(mariadb_server, role) as target, pytest.raises(DeliveryError) as failure:
        target.grant(base + suffix)
    assert not failure.value.retryable
    assert mariadb_server.snapshot() == before
    assert lookalike not in mariadb_server.members_by_hand(role)


def test_a_stopped_server_is_retried_and_grants_work_once_it_is_back(mariadb_server,
                                                                     role_and_login):
    role, login = role_and_login
    with target_on(mariadb_server, role) as target:
        target.members()  # holds a connection that the restart will break
        mariadb_server.stop()
        try:
            with pytest.raises(DeliveryError, match="cannot be reached") as failure:
                target.grant(login)
            assert failure.value.retryable
            with pytest.raises(ConnectorProblem, match="cannot be reached"):
                target.check()
        finally:
            mariadb_server.start()
        target.grant(login)
    assert mariadb_server.members_by_hand(role) == {login}


def test_a_connection_broken_by_a_restart_is_replaced(mariadb_server, role_and_login):
    role, login = role_and_login
    with target_on(mariadb_server, role) as target:
        target.members()
        mariadb_server.stop()
        mariadb_server.start()
        target.grant(login)
    assert mariadb_server.members_by_hand(role) == {login}


# --- settings ------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "role", "message"), [
    ("postgres://u:p@db:5432/x", "r", "url: give mysql://"),
    ("mysql://u:p@:3306", "r", "url: give mysql://"),
    ("mysql://u:p@db:99999", "r", "url: the port"),
    ("mysql://u:p@db?sslmode=require", "r", "url: unknown parameters sslmode"),
    ("mysql://u:p@db", "", "role: the role name is empty"),
    ("mariadb://u:p@db", "r ", "role: the role 'r ' ends in a space"),
])
def test_bad_settings_are_refused_naming_the_setting(url, role, message):
    settings_ = Settings(target_name=role, secrets={"server_url": url}, options={})
    with pytest.raises(ConnectorProblem, match=message):
        MariaDBRoleTarget.check_settings(settings_)


def test_ssl_ca_is_passed_on_for_tls():
    from breakglass.connectors.mariadb_role import parse_url

    arguments = parse_url("mariadb://u%40x:p%3Aw@db.example:3307?ssl_ca=/etc/ca.pem")
    assert arguments == {"host": "db.example", "port": 3307, "user": "u@x", "password": "p:w",
                         "ssl_ca": "/etc/ca.pem", "ssl_verify_cert": True,
                         "ssl_verify_identity": True}


# --- hostile names -------------------------------------------------------------------------

TRICKY_PIECES = ["'", "`", '"', ";", " ", "--", "\\", "%", "_", "/*", "*/", "@", "\n",
                 "é", "ß", "中", "DROP USER root", "'); DROP ROLE x; --"]
hostile_names = st.lists(
    st.sampled_from(TRICKY_PIECES)
    | st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1, max_size=8,
).map("".join).filter(lambda name: len(name) <= 120 and not name.endswith(" "))
_hypothesis_numbers = itertools.count()


@settings(max_examples=30, deadline=None)
@given(role_part=hostile_names, login_part=hostile_names)
def test_hostile_names_change_only_the_intended_membership(mariadb_server, role_part,
                                                           login_part):
    number = next(_hypothesis_numbers)
    role, login = f"r{number}{role_part}", f"u{number}{login_part}"
    mariadb_server.prepare_target(role)
    mariadb_server.create_login(login)
    names_before = mariadb_server.roles()
    before = mariadb_server.snapshot()
    try:
        with target_on(mariadb_server, role) as target:
            target.grant(login)
            expected = copy.deepcopy(before)
            expected["roles_mapping"].add(("%", login, role, "N"))
            expected["accounts"][(login, "%")]["default_role"] = role
            assert mariadb_server.snapshot() == expected
            assert target.members() == mariadb_server.members_by_hand(role) == {login}

            target.revoke(login)
            assert mariadb_server.snapshot() == before
            assert mariadb_server.roles() == names_before
    finally:
        mariadb_server.execute(f"DROP USER {account(login)}")
        mariadb_server.execute(f"DROP ROLE {quote_identifier(role)}")

"""The PostgreSQL role target against a real server (tests/connectors/postgres_server.py):
idempotent grant and revoke, members as the server lists them, plain answers when a name is
unknown or a right is missing, retries when the server is down, and nothing executed but the
intended GRANT or REVOKE whatever the names hold."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from audit.outbox import DeliveryError
from breakglass.connectors.base import ConnectorProblem
from breakglass.connectors.postgres_role import PostgresRoleTarget
from breakglass.models import Connector
from recovery.crypto import encrypt_field

pytestmark = pytest.mark.django_db


def target(server, role: str, url: str | None = None) -> PostgresRoleTarget:
    connector = Connector(name="pg", kind="postgres_role", target_name=role,
                          server_url_encrypted=encrypt_field(url or server.url()))
    return PostgresRoleTarget(connector)


def test_grant_and_revoke_are_idempotent_and_members_match_the_server(postgres_target):
    postgres_target.prepare_target("db_admin_a")
    for login in ("alice_a", "bob_a"):
        postgres_target.create_login(login)
    with target(postgres_target, "db_admin_a") as role:
        assert role.grant("alice_a") == role.grant("alice_a") == "postgres:db_admin_a:granted"
        postgres_target.add_by_hand("db_admin_a", "bob_a")
        assert role.members() == postgres_target.members_by_hand("db_admin_a") == {
            "alice_a", "bob_a"}
        role.revoke("alice_a")
        assert role.revoke("alice_a") == "postgres:db_admin_a:revoked"
        assert role.revoke("nobody_at_all") == "postgres:db_admin_a:absent"
        assert postgres_target.members_by_hand("db_admin_a") == {"bob_a"}


def test_a_membership_granted_by_someone_else_is_revoked_too(postgres_target):
    postgres_target.prepare_target("db_admin_b")
    postgres_target.create_login("carol_b")
    postgres_target.add_by_hand("db_admin_b", "carol_b")  # granted by the superuser
    with target(postgres_target, "db_admin_b") as role:
        role.revoke("carol_b")
    assert postgres_target.members_by_hand("db_admin_b") == set()


def test_unknown_names_and_missing_rights_are_said_plainly(postgres_target):
    postgres_target.prepare_target("db_admin_c")
    with target(postgres_target, "db_admin_c") as role:
        with pytest.raises(DeliveryError, match="the login 'ghost' does not exist") as unknown:
            role.grant("ghost")
        assert unknown.value.retryable is False
        assert "role 'db_admin_c' exists with 0 members" in role.check()
    with target(postgres_target, "no_such_role") as role:
        with pytest.raises(ConnectorProblem, match="the role 'no_such_role' does not exist"):
            role.check()
        postgres_target.create_login("dave_c")
        with pytest.raises(DeliveryError, match="the role 'no_such_role' does not exist"):
            role.grant("dave_c")
    with postgres_target.admin() as admin:
        admin.execute("CREATE ROLE weak_account LOGIN PASSWORD 'weak'")
    weak = target(postgres_target, "db_admin_c", postgres_target.url("weak_account", "weak"))
    with weak, pytest.raises(ConnectorProblem, match="'weak_account' may not grant"):
        weak.check()
    wrong = target(postgres_target, "db_admin_c", postgres_target.url(password="wrong"))
    with wrong, pytest.raises(ConnectorProblem, match=r"unreachable.*password"):
        wrong.check()


def test_a_server_down_is_retried_and_works_again_when_it_returns(postgres_target):
    postgres_target.prepare_target("db_admin_d")
    postgres_target.create_login("erin_d")
    with target(postgres_target, "db_admin_d") as role:
        role.members()  # the connection is open
        postgres_target.stop()
        try:
            with pytest.raises(DeliveryError, match="unreachable") as down:
                role.grant("erin_d")
            assert down.value.retryable is True
        finally:
            postgres_target.start()
        role.grant("erin_d")
    assert postgres_target.members_by_hand("db_admin_d") == {"erin_d"}


# Names people really give, and names built to break out of a statement.
hostile_names = st.text(
    alphabet=st.sampled_from(list("aZ_ 09\"';-\u2013é中😀`\\$.,()*/")), min_size=1, max_size=20,
).filter(lambda name: len(name.encode()) <= 63)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(role_name=hostile_names, login=hostile_names)
def test_hostile_names_are_identifiers_never_statements(postgres_target, role_name, login):
    role_name, login = f"r {role_name}", f"l {login}"
    postgres_target.prepare_target(role_name)
    postgres_target.create_login(login)
    before = postgres_target.roles()
    with target(postgres_target, role_name) as role:
        role.grant(login)
        assert postgres_target.roles() == before | {(role_name, login)}
        assert login in role.members()
        role.revoke(login)
    assert postgres_target.roles() == before
    with postgres_target.admin() as admin:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role_name)))

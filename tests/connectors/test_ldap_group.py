"""The LDAP group connector against a real OpenLDAP server (slapd_server.py): membership
changes are idempotent and touch nothing else, members() reads what the directory holds,
check() and failures speak plainly, and any login is escaped into its own DN."""

import itertools
import time
import uuid

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audit.outbox import DeliveryError
from breakglass.connectors import ldap_group
from breakglass.connectors.base import ConnectorProblem
from breakglass.connectors.ldap_group import LdapGroupTarget
from breakglass.models import Connector, Group
from breakglass.services.connectors import parse_settings
from breakglass.services.errors import InvalidInput
from recovery.crypto import encrypt_field
from tests.connectors.slapd_server import PEOPLE, SUFFIX, is_dn, person_dn

KINDS = {"member": "groups", "memberUid": "posixgroups"}


def new_group(server, attribute: str = "member", ou: str | None = None) -> str:
    dn = f"cn=bg-{uuid.uuid4().hex[:10]},ou={ou or KINDS[attribute]},{SUFFIX}"
    server.prepare_target(dn)
    return dn


def new_login(server, prefix: str = "user") -> str:
    login = f"{prefix}-{uuid.uuid4().hex[:10]}"
    server.create_login(login)
    return login


def connector_for(server, dn: str, **changes: str) -> Connector:
    """A connector set up as `create_connector` would, from the server's options."""
    parsed = parse_settings("ldap_group", server.settings(dn) | changes)
    connector = Connector(name="directory", group=Group(name="Ops", slug="ops"),
                          kind="ldap_group", target_name=parsed.target_name,
                          options=parsed.options)
    for store, value in parsed.secrets.items():
        setattr(connector, f"{store}_encrypted", encrypt_field(value))
    return connector


@pytest.fixture
def target_on(ldap_server):
    """Opens targets on the server and closes them after the test."""
    opened = []

    def open_target(dn: str, **changes: str) -> LdapGroupTarget:
        opened.append(LdapGroupTarget(connector_for(ldap_server, dn, **changes)))
        return opened[-1]

    yield open_target
    for target in opened:
        target.close()


# --- Grant and revoke ---------------------------------------------------------------------

@pytest.mark.parametrize("attribute", ["member", "memberUid"])
def test_grant_and_revoke_are_idempotent(ldap_server, target_on, attribute):
    dn, login = new_group(ldap_server, attribute), new_login(ldap_server)
    target = target_on(dn)

    assert target.grant(login).startswith("added ")
    assert ldap_server.members_by_hand(dn) == {login}
    assert "was already in" in target.grant(login)
    assert ldap_server.members_by_hand(dn) == {login}

    assert target.revoke(login).startswith("removed ")
    assert ldap_server.members_by_hand(dn) == set()
    assert "was not in" in target.revoke(login)
    assert ldap_server.members_by_hand(dn) == set()


def test_a_member_value_is_the_users_dn_from_the_template(ldap_server, target_on):
    dn, login = new_group(ldap_server), new_login(ldap_server)

    target_on(dn).grant(login)

    assert ldap_server.snapshot()[dn]["member"] == {ldap_server.placeholder_dn,
                                                     f"uid={login},{PEOPLE}"}


def test_a_login_that_is_a_dn_is_taken_as_it_is(ldap_server, target_on):
    dn, login = new_group(ldap_server), new_login(ldap_server)
    target = target_on(dn)

    target.grant(f"uid={login},{PEOPLE}")

    assert ldap_server.members_by_hand(dn) == {login}
    assert login in target.members()


def test_members_are_what_the_directory_holds_with_foreign_dns_as_they_are(ldap_server,
                                                                          target_on):
    dn, login = new_group(ldap_server), new_login(ldap_server)
    contractor = f"cn=Contractor Jo,ou=partners,{SUFFIX}"
    ldap_server.add_by_hand(dn, login)
    ldap_server.add_by_hand(dn, contractor)
    target = target_on(dn)

    assert ldap_server.members_by_hand(dn) == {login, contractor}
    assert target.members() == {login, contractor, ldap_server.placeholder}

    assert target.revoke(contractor).startswith("removed ")
    assert ldap_server.members_by_hand(dn) == {login}
    assert target.members() == {login, ldap_server.placeholder}


def test_a_member_dn_spelt_otherwise_is_still_its_login(ldap_server, target_on):
    dn = new_group(ldap_server)
    with ldap_server.admin() as connection:
        connection.modify(dn, {"member": [("MODIFY_ADD", [
            "UID = a\\2Cb ,OU=People,DC=Example,dc=org"])]})
        assert connection.result["result"] == 0, connection.result

    assert target_on(dn).members() == {"a,b", ldap_server.placeholder}


def test_posix_group_members_are_uids(ldap_server, target_on):
    dn = new_group(ldap_server, "memberUid")
    ldap_server.add_by_hand(dn, "carol")

    assert target_on(dn).members() == {"carol"} == ldap_server.members_by_hand(dn)


def test_members_reads_ten_thousand_values_at_once(ldap_server, target_on):
    dn = new_group(ldap_server)
    logins = {f"load-{index}" for index in range(10_000)}
    with ldap_server.admin() as connection:
        connection.modify(dn, {"member": [("MODIFY_ADD", [person_dn(login)
                                                           for login in logins])]})
        assert connection.result["result"] == 0, connection.result
    target = target_on(dn)

    try:
        started = time.monotonic()
        members = target.members()
        elapsed = time.monotonic() - started
    finally:
        with ldap_server.admin() as connection:  # later snapshots need not read it all
            connection.delete(dn)

    assert members == logins | {ldap_server.placeholder}
    assert elapsed < 5


# --- Refusals -----------------------------------------------------------------------------

def test_a_grant_for_a_user_the_directory_lacks_is_refused_for_good(ldap_server, target_on):
    dn = new_group(ldap_server)

    with pytest.raises(DeliveryError) as refused:
        target_on(dn).grant("nobody-here")

    assert not refused.value.retryable
    assert str(refused.value) == f"the directory has no entry uid=nobody-here,{PEOPLE}"
    assert ldap_server.members_by_hand(dn) == set()


def test_removing_the_last_member_says_how_to_keep_one(ldap_server, target_on):
    dn = new_group(ldap_server)

    with pytest.raises(DeliveryError, match="objectClassViolation") as refused:
        target_on(dn).revoke(ldap_server.placeholder)

    assert not refused.value.retryable
    assert "list breakglass-placeholder in this connector's ignore_logins" in str(refused.value)
    assert ldap_server.snapshot()[dn]["member"] == {ldap_server.placeholder_dn}


def test_a_group_beyond_the_bind_dns_rights_is_refused_for_good(ldap_server, target_on):
    dn, login = new_group(ldap_server, ou="locked"), new_login(ldap_server)
    target = target_on(dn)

    with pytest.raises(DeliveryError, match="insufficientAccessRights") as refused:
        target.grant(login)
    assert not refused.value.retryable
    with pytest.raises(ConnectorProblem, match=f"may not change member of {dn}"):
        target.check()


def test_a_posix_group_refuses_a_uid_it_cannot_hold(ldap_server, target_on):
    dn = new_group(ldap_server, "memberUid")

    with pytest.raises(DeliveryError, match="refused 'zoë' as a memberUid value") as refused:
        target_on(dn).grant("zoë")

    assert not refused.value.retryable


def test_a_stopped_server_is_retried_and_the_target_recovers(ldap_server, target_on):
    dn, first, second = new_group(ldap_server), new_login(ldap_server), new_login(ldap_server)
    target = target_on(dn)
    target.grant(first)

    ldap_server.stop()
    try:
        with pytest.raises(DeliveryError, match="cannot reach the directory") as down:
            target.grant(second)
        assert down.value.retryable
        with pytest.raises(ConnectorProblem, match="cannot reach the directory"):
            target_on(dn).check()
    finally:
        ldap_server.start()

    assert target.grant(second).startswith("added ")
    assert ldap_server.members_by_hand(dn) == {first, second}


def test_the_kept_connection_survives_a_restart(ldap_server, target_on):
    dn, login = new_group(ldap_server), new_login(ldap_server)
    target = target_on(dn)
    target.members()

    ldap_server.stop()
    ldap_server.start()

    assert target.grant(login).startswith("added ")


# --- check() and settings ---------------------------------------------------------------

@pytest.mark.parametrize(("attribute", "object_class"),
                         [("member", "groupOfNames"), ("memberUid", "posixGroup")])
def test_check_confirms_tls_the_group_and_write_rights(ldap_server, target_on, attribute,
                                                       object_class):
    dn = new_group(ldap_server, attribute)
    ldap_server.add_by_hand(dn, "cn=breakglass,ou=services,dc=example,dc=org"
                            if attribute == "member" else "breakglass-write-check")
    before = ldap_server.snapshot()

    words = target_on(dn).check()

    assert words.startswith(f"Connected over StartTLS to {ldap_server.url} as "
                            "cn=breakglass,ou=services,dc=example,dc=org.")
    assert f"The group {dn} exists ({object_class}" in words
    assert f"may change its {attribute}" in words
    assert ldap_server.snapshot() == before


def test_check_names_an_unknown_group(ldap_server, target_on):
    dn = f"cn=missing-{uuid.uuid4().hex[:8]},ou=groups,{SUFFIX}"

    with pytest.raises(ConnectorProblem, match=f"^the directory has no group {dn}"):
        target_on(dn).check()


def test_check_names_a_wrong_password(ldap_server, target_on):
    dn = new_group(ldap_server)

    with pytest.raises(ConnectorProblem) as refused:
        target_on(dn, bind_password="not-the-password").check()

    assert str(refused.value) == ("the directory refused the bind DN or password "
                                  "(invalidCredentials)")


def test_a_group_of_another_kind_is_named_for_good(ldap_server, target_on):
    dn = new_group(ldap_server, "member")

    with pytest.raises(DeliveryError, match=f"^{dn} does not take memberUid values") as refused:
        target_on(dn, member_attribute="memberUid").grant("carol")

    assert not refused.value.retryable


def test_an_untrusted_certificate_is_refused_for_good(ldap_server, target_on):
    dn = new_group(ldap_server)
    target = target_on(dn, ca_file="")  # the system's CAs, which never signed the test CA

    with pytest.raises(ConnectorProblem, match=r"certificate .* was not accepted"):
        target.check()
    with pytest.raises(DeliveryError) as refused:
        target.grant("anyone")
    assert not refused.value.retryable


def test_ldaps_is_verified_too(ldap_server, target_on):
    dn = new_group(ldap_server)

    words = target_on(dn, url=ldap_server.ldaps_url).check()

    assert words.startswith(f"Connected over LDAPS to {ldap_server.ldaps_url} as ")


@pytest.mark.parametrize("url", ["url", "ldaps_url"])
def test_a_certificate_for_another_name_is_refused(ldap_server, target_on, url):
    dn = new_group(ldap_server)
    other_name = getattr(ldap_server, url).replace("127.0.0.1", "127.0.0.2")

    with pytest.raises(ConnectorProblem, match="was not accepted") as refused:
        target_on(dn, url=other_name).check()

    assert "IP address mismatch" in str(refused.value)


def test_plain_ldap_needs_allow_plain(ldap_server, target_on):
    dn = new_group(ldap_server)

    with pytest.raises(InvalidInput, match="in clear") as refused:
        connector_for(ldap_server, dn, start_tls="false")
    assert refused.value.field == "url"

    words = target_on(dn, start_tls="false", allow_plain="true").check()
    assert words.startswith("Connected over plain LDAP")
    assert "crossed the network in clear" in words


@pytest.mark.parametrize(("option", "value", "field"), [
    ("url", "https://127.0.0.1", "url"),
    ("url", "ldap://127.0.0.1:389/dc=example,dc=org", "url"),
    ("group_dn", "not a dn", "group_dn"),
    ("user_dn_template", "uid=alice,ou=people,dc=example,dc=org", "user_dn_template"),
    ("user_dn_template", "uid=x{login},ou=people,dc=example,dc=org", "user_dn_template"),
    ("user_dn_template", "", "user_dn_template"),
    ("ca_file", "/nonexistent/ca.pem", "ca_file"),
])
def test_settings_are_checked_by_name(ldap_server, option, value, field):
    with pytest.raises(InvalidInput) as refused:
        connector_for(ldap_server, f"cn=any,ou=groups,{SUFFIX}", **{option: value})

    assert refused.value.field == field


# --- Escaping -----------------------------------------------------------------------------

# The separator "|" is kept out of the generated text so that every login is new: the
# directory compares uids without regard to case and surrounding spaces.
login_parts = st.text(
    st.sampled_from(',+="\\<>;# ') | st.characters(
        codec="utf-8", categories=["L", "N", "P", "S", "Zs"], exclude_characters="|"),
    max_size=6)
_examples = itertools.count()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(left=login_parts, right=login_parts)
def test_any_login_changes_exactly_its_own_member_value(ldap_server, left, right):
    login = f"{left}|{next(_examples)}|{right}"
    assume(not is_dn(login) and not ldap_group.is_dn(login))  # a DN names itself, by design
    dn = new_group(ldap_server)
    ldap_server.create_login(login)
    before = ldap_server.snapshot()
    [entry] = [name for name, entry in before.items() if entry.get("uid") == {login}]

    with LdapGroupTarget(connector_for(ldap_server, dn)) as target:
        target.grant(login)
        granted = ldap_server.snapshot()
        assert target.members() == {login, ldap_server.placeholder}
        target.revoke(login)

    assert changes(before, granted) == {dn: {"member": before[dn]["member"] | {entry}}}
    assert ldap_server.members_by_hand(dn) == set()
    assert ldap_server.snapshot() == before


def changes(before: dict, after: dict) -> dict:
    """The entries that differ, with the attributes that differ as they are after."""
    assert after.keys() == before.keys()
    return {name: {attribute: values for attribute, values in entry.items()
                   if before[name].get(attribute) != values}
            for name, entry in after.items() if entry != before[name]}

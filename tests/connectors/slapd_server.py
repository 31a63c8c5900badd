"""A throwaway OpenLDAP server as the LDAP group connector's target: its own slapd on a free
port with a certificate from a CA made for the session, so connectors use StartTLS verified
against that CA. Connectors bind as cn=breakglass,ou=services,dc=example,dc=org, which may
change `member` and `memberUid` under ou=groups and ou=posixgroups only (ldap/slapd.conf);
the fixture's own reads and writes bind as the rootdn, apart from the connector's code.

Which kind of group a test gets depends on where its DN lives: under ou=posixgroups a
posixGroup (`memberUid` holds uids); anywhere else a groupOfNames (`member` holds DNs built
from uid={login},ou=people,dc=example,dc=org), whose first member is the placeholder every
groupOfNames needs, uid=breakglass-placeholder: the connector's settings list it in
ignore_logins, and members_by_hand leaves it out. A bare name as a target means
cn=<name>,ou=groups,dc=example,dc=org."""

import os
import shutil
import socket
import string
import subprocess
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.ports import free_port

with warnings.catch_warnings():
    # ldap3 2.9.1 still imports names pyasn1 0.6 deprecates; the suite turns warnings into errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import escape_rdn, parse_dn

REQUIRE = "BREAKGLASS_REQUIRE_LDAP"
CONFIG = Path(__file__).parent / "ldap"
SCHEMAS = Path("/etc/ldap/schema")
SUFFIX = "dc=example,dc=org"
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{SUFFIX}", "directory-admin"
SERVICE_DN, SERVICE_PASSWORD = f"cn=breakglass,ou=services,{SUFFIX}", "connector-secret"
PEOPLE = f"ou=people,{SUFFIX}"
USER_DN_TEMPLATE = f"uid={{login}},{PEOPLE}"
PLACEHOLDER = "breakglass-placeholder"
ENTRY_EXISTS, VALUE_EXISTS = 68, 20


def _slapd() -> str | None:
    return shutil.which("slapd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")


def _make_certificates(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 and localhost, valid for two days."""
    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], cwd=directory, check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *key, "-days", "2", "-subj", "/CN=Breakglass test CA",
            "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    openssl("req", *key, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem")


def group_dn(target: str) -> str:
    return target if "=" in target else f"cn={escape_rdn(target)},ou=groups,{SUFFIX}"


def is_posix(target: str) -> bool:
    return group_dn(target).lower().endswith(f",ou=posixgroups,{SUFFIX}")


def is_dn(login: str) -> bool:
    """A login that is itself a DN (two RDNs or more), as a per-user override may give."""
    try:
        return len(parse_dn(login)) >= 2
    except LDAPInvalidDnError:
        return False


def person_dn(login: str) -> str:
    return f"uid={escape_rdn(login)},{PEOPLE}"


class SlapdServer:
    kind = "ldap_group"
    # What every groupOfNames holds besides its members, as a login and as a DN.
    placeholder, placeholder_dn = PLACEHOLDER, person_dn(PLACEHOLDER)

    def __init__(self, slapd: str, directory: Path):
        self.slapd, self.directory, self.port = slapd, directory, free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{free_port()}"
        # Also at 127.0.0.2, an address its certificate does not name.
        self.listeners = " ".join(f"{url.replace('127.0.0.1', host)}/" for host in
                                  ("127.0.0.1", "127.0.0.2") for url in (self.url, self.ldaps_url))
        self.ca_file = directory / "ca.pem"
        self.process: subprocess.Popen | None = None
        self._gid = 10000
        _make_certificates(directory)
        (directory / "data").mkdir()
        values = {"directory": directory, "admin_password": ADMIN_PASSWORD,
                  "service_password": SERVICE_PASSWORD}
        for name in ("slapd.conf", "base.ldif"):
            text = string.Template((CONFIG / name).read_text()).substitute(values)
            (directory / name).write_text(text)
        subprocess.run([str(Path(slapd).with_name("slapadd")), "-q", "-f",
                        str(directory / "slapd.conf"), "-l", str(directory / "base.ldif")],
                       check=True, capture_output=True)
        self.start()

    @contextmanager
    def admin(self):
        """A connection bound as the rootdn, plain LDAP: the fixture's own view."""
        connection = ldap3.Connection(ldap3.Server("127.0.0.1", port=self.port,
                                                   get_info=ldap3.NONE),
                                      ADMIN_DN, ADMIN_PASSWORD, receive_timeout=10)
        connection.open(read_server_info=False)
        connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms waits
        try:
            assert connection.bind(read_server_info=False), connection.result
            yield connection
        finally:
            connection.unbind()

    # --- the protocol the connector tests use ------------------------------------------------

    def target_for(self, name: str) -> str:
        return group_dn(name)

    def settings(self, target: str) -> dict[str, str]:
        settings = {"url": self.url, "bind_dn": SERVICE_DN, "bind_password": SERVICE_PASSWORD,
                    "group_dn": group_dn(target), "ca_file": str(self.ca_file)}
        if is_posix(target):
            return settings | {"member_attribute": "memberUid"}
        return settings | {"member_attribute": "member", "user_dn_template": USER_DN_TEMPLATE,
                           "ignore_logins": PLACEHOLDER}

    def prepare_target(self, target: str) -> None:
        dn = group_dn(target)
        (name_type, name, _), (parent_type, parent_name, _), *_ = parse_dn(dn)
        assert name_type.lower() == "cn" and parent_type.lower() == "ou", dn
        parent = dn.split(",", 1)[1]
        with self.admin() as connection:
            self._add(connection, parent, ["organizationalUnit"], {"ou": parent_name})
            if is_posix(target):
                self._gid += 1
                self._add(connection, dn, ["posixGroup"], {"cn": name, "gidNumber": self._gid})
            else:
                self._add(connection, dn, ["groupOfNames"],
                          {"cn": name, "member": self.placeholder_dn})

    def create_login(self, login: str) -> None:
        with self.admin() as connection:
            self._add(connection, person_dn(login), ["inetOrgPerson"],
                      {"uid": login, "cn": login, "sn": login})

    def add_by_hand(self, target: str, login: str) -> None:
        attribute, value = self._membership(target, login)
        with self.admin() as connection:
            connection.modify(group_dn(target), {attribute: [(ldap3.MODIFY_ADD, [value])]})
            assert connection.result["result"] in (0, VALUE_EXISTS), connection.result

    def members_by_hand(self, target: str) -> set[str]:
        """The group's members as logins: a member DN naming an entry under ou=people is
        that entry's uid, any other DN is itself; the placeholder is left out."""
        attribute = "memberUid" if is_posix(target) else "member"
        with self.admin() as connection:
            connection.search(group_dn(target), "(objectClass=*)", ldap3.BASE,
                              attributes=[attribute])
            values = self._values(connection.response[0], attribute)
            if is_posix(target):
                return set(values)
            # The server answers member values and entry DNs in the same form (but for the
            # case of values, which it keeps as written).
            connection.search(PEOPLE, "(objectClass=inetOrgPerson)", ldap3.LEVEL,
                              attributes=["uid"])
            uids = {entry["dn"].casefold(): self._values(entry, "uid")[0]
                    for entry in connection.response if entry["type"] == "searchResEntry"}
        return {uids.get(value.casefold(), value) for value in values
                if value.casefold() != self.placeholder_dn.casefold()}

    def entries(self) -> set[str]:
        return set(self.snapshot())

    def snapshot(self) -> dict[str, dict[str, frozenset[str]]]:
        """Every entry with every value it holds: DN → attribute → values."""
        with self.admin() as connection:
            connection.search(SUFFIX, "(objectClass=*)", ldap3.SUBTREE, attributes=["*"])
            return {entry["dn"]: {name.lower(): frozenset(self._values(entry, name))
                                  for name in entry["raw_attributes"]}
                    for entry in connection.response if entry["type"] == "searchResEntry"}

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def start(self) -> None:
        with open(self.directory / "slapd.log", "ab") as log:
            self.process = subprocess.Popen(
                [self.slapd, "-h", self.listeners, "-f", str(self.directory / "slapd.conf"),
                 "-d", "0"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        log = (self.directory / "slapd.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"slapd did not start:\n{log}")

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _membership(target: str, login: str) -> tuple[str, str]:
        if is_posix(target):
            return "memberUid", login
        return "member", login if is_dn(login) else person_dn(login)

    @staticmethod
    def _add(connection, dn: str, object_classes: list[str], attributes: dict) -> None:
        connection.add(dn, object_classes, attributes)
        assert connection.result["result"] in (0, ENTRY_EXISTS), (dn, connection.result)

    @staticmethod
    def _values(entry: dict, attribute: str) -> list[str]:
        for name, values in entry["raw_attributes"].items():
            if name.lower() == attribute.lower():
                return [value.decode() for value in values]
        return []


@pytest.fixture(scope="session")
def ldap_server():
    slapd = _slapd()
    missing = ("slapd: apt-get install slapd" if slapd is None or not SCHEMAS.is_dir()
               else "openssl: apt-get install openssl" if shutil.which("openssl") is None
               else None)
    if missing:
        if os.environ.get(REQUIRE):
            pytest.fail(f"{REQUIRE} is set but the test needs {missing}")
        pytest.skip(f"needs {missing}")
    directory = Path(tempfile.mkdtemp(prefix="breakglass-slapd-"))
    try:
        server = SlapdServer(slapd, directory)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

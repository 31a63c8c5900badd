"""An LDAP group (OpenLDAP, 389 Directory Server, Active Directory...): access adds the
user's value to the group's member attribute, ending it removes the value.

A login is a uid. With `member` (groupOfNames and the like) the value is the user's DN, made
from user_dn_template with the login escaped per RFC 4514, or the login itself when it is
already a DN (a per-user login may give one); with `memberUid` (posixGroup) it is the uid.
The connection is always protected and the server's certificate always verified, unless
the operator allows plain ldap:// for a lab."""

import contextlib
import os
import re
import socket
import ssl
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from audit.outbox import DeliveryError
from breakglass.connectors.base import (
    ConnectorProblem,
    Notice,
    Setting,
    Settings,
    Target,
    secret,
)

with warnings.catch_warnings():
    # ldap3 2.9.1 still imports names that pyasn1 0.6 deprecates; nothing to act on here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.core import exceptions as ldap_errors

TIMEOUT_SECONDS = 10
DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}
MEMBER, MEMBER_UID = "member", "memberUid"
LOGIN = "{login}"
# Added and removed at once by check() when the bind DN cannot be (memberUid, or no DN).
PROBE_UID = "breakglass-write-check"
# What the advice names when a group must keep a member its object class requires.
PLACEHOLDER = "breakglass-placeholder"

# RFC 4511 result codes this connector acts on.
SUCCESS, NO_SUCH_ATTRIBUTE, VALUE_EXISTS = 0, 16, 20
INVALID_SYNTAX, NO_SUCH_OBJECT, INVALID_DN_SYNTAX = 21, 32, 34
CONFIDENTIALITY_REQUIRED, INVALID_CREDENTIALS, INSUFFICIENT_ACCESS = 13, 49, 50
OBJECT_CLASS_VIOLATION = 65
PASSING = {3, 51, 52, 80}  # timeLimitExceeded, busy, unavailable, other: worth a retry


# --- Distinguished names (RFC 4514) -----------------------------------------------------------

_ESCAPED = set('"+,;<>\\=')  # escaped wherever they are; a space or # only at the edges
_ESCAPABLE = _ESCAPED | {" ", "#"}
_TYPE = re.compile(r" *([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*) *=")
_HEX = re.compile(r"[0-9A-Fa-f]{2}")


def escape_value(value: str) -> str:
    """`value` as an attribute value inside a DN."""
    last = len(value) - 1
    return "".join(
        "\\00" if char == "\x00"
        else f"\\{char}" if char in _ESCAPED or (index == 0 and char in " #")
        or (index == last and char == " ")
        else char
        for index, char in enumerate(value))


def parse_dn(text: str) -> list[tuple[tuple[str, str], ...]]:
    """The RDNs of a DN, each a tuple of (attribute type, unescaped value). Raises
    ValueError for what is not a DN; hex-encoded (#...) values are not read."""
    rdns, avas, position = [], [], 0
    while True:
        match = _TYPE.match(text, position)
        if match is None:
            raise ValueError(f"no attribute type at {position}")
        value, position = _read_value(text, match.end())
        avas.append((match.group(1), value))
        if position == len(text):
            rdns.append(tuple(avas))
            return rdns
        if text[position] == ",":
            rdns.append(tuple(avas))
            avas = []
        position += 1


def _read_value(text: str, position: int) -> tuple[str, int]:
    """The value starting at `position`, unescaped, and where it ends (a separator or the
    end). Unescaped spaces around it are not part of it."""
    while position < len(text) and text[position] == " ":
        position += 1
    if text.startswith("#", position):
        raise ValueError("hex-encoded values are not read")
    value, significant = bytearray(), 0
    while position < len(text) and text[position] not in ",+":
        char = text[position]
        if char == "\\":
            pair = _HEX.match(text, position + 1)
            if pair:
                value.append(int(pair.group(), 16))
                position += 3
            elif position + 1 < len(text) and text[position + 1] in _ESCAPABLE:
                value += text[position + 1].encode()
                position += 2
            else:
                raise ValueError(f"a bad escape at {position}")
            significant = len(value)
            continue
        if char in '";<>':
            raise ValueError(f"{char} must be escaped")
        value += char.encode()
        position += 1
        if char != " ":
            significant = len(value)
    try:
        return bytes(value[:significant]).decode(), position
    except UnicodeDecodeError:
        raise ValueError("escaped bytes are not UTF-8") from None


def is_dn(login: str) -> bool:
    """A login that is itself a DN (two RDNs or more) names its member directly."""
    try:
        return len(parse_dn(login)) >= 2
    except ValueError:
        return False


def _rdn_key(rdn: tuple[tuple[str, str], ...]) -> frozenset:
    return frozenset((name.lower(), value.casefold()) for name, value in rdn)


class UserDnTemplate:
    """uid={login},ou=people,dc=example,dc=org: from logins to member DNs and back."""

    def __init__(self, template: str):
        if template.count(LOGIN) != 1:
            raise ConnectorProblem(f"user_dn_template: give {LOGIN} once, as in "
                                   f"uid={LOGIN},ou=people,dc=example,dc=org")
        try:
            rdns = parse_dn(template)
        except ValueError as error:
            raise ConnectorProblem(f"user_dn_template: not a DN ({error})") from None
        places = [index for index, rdn in enumerate(rdns) if rdn[0][1] == LOGIN]
        if len(places) != 1 or len(rdns[places[0]]) != 1:
            raise ConnectorProblem(f"user_dn_template: {LOGIN} must be a whole value of "
                                   f"its own RDN, as in uid={LOGIN},ou=people,dc=example,dc=org")
        self.template, self.place = template, places[0]
        self.login_type = rdns[self.place][0][0].lower()
        self.fixed = [_rdn_key(rdn) for rdn in rdns]

    def dn(self, login: str) -> str:
        return self.template.replace(LOGIN, escape_value(login))

    def login(self, dn: str) -> str | None:
        """The login a DN of this form names, or None for any other DN."""
        try:
            rdns = parse_dn(dn)
        except ValueError:
            return None
        if len(rdns) != len(self.fixed) or len(rdns[self.place]) != 1:
            return None
        (name, value), = rdns[self.place]
        if name.lower() != self.login_type:
            return None
        if any(_rdn_key(rdn) != fixed for index, (rdn, fixed) in
               enumerate(zip(rdns, self.fixed, strict=True)) if index != self.place):
            return None
        return value


# --- Settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LdapSettings:
    url: str
    scheme: str
    host: str
    port: int
    bind_dn: str
    bind_password: str
    group_dn: str
    attribute: str
    template: UserDnTemplate | None
    start_tls: bool
    ca_file: str | None
    allow_plain: bool

    @property
    def plain(self) -> bool:
        return self.scheme == "ldap" and not self.start_tls

    @property
    def protection(self) -> str:
        if self.scheme == "ldaps":
            return "LDAPS"
        return "plain LDAP (allow_plain)" if self.plain else "StartTLS"


def checked_settings(url: str, bind_dn: str, bind_password: str, group_dn: str,
                     options: dict) -> LdapSettings:
    """Every setting checked; ConnectorProblem("<setting>: why") for the first wrong one."""
    scheme, host, port = _checked_url(url)
    start_tls = bool(options.get("start_tls", True))
    allow_plain = bool(options.get("allow_plain", False))
    if scheme == "ldap" and not start_tls and not allow_plain:
        raise ConnectorProblem("url: ldap:// without StartTLS sends the bind password in "
                               "clear; use ldaps://, leave start_tls on, or set allow_plain")
    if not bind_dn or not bind_password:
        raise ConnectorProblem(f"{'bind_password' if bind_dn else 'bind_dn'}: required")
    try:
        parse_dn(group_dn)
    except ValueError as error:
        raise ConnectorProblem(f"group_dn: {group_dn!r} is not a DN ({error})") from None
    attribute = options.get("member_attribute") or MEMBER
    if attribute not in (MEMBER, MEMBER_UID):
        raise ConnectorProblem(f"member_attribute: give {MEMBER} or {MEMBER_UID}")
    template = None
    if attribute == MEMBER:
        if not options.get("user_dn_template"):
            raise ConnectorProblem("user_dn_template: required with member_attribute member, "
                                   f"e.g. uid={LOGIN},ou=people,dc=example,dc=org")
        template = UserDnTemplate(options["user_dn_template"])
    ca_file = options.get("ca_file") or None
    if ca_file and not os.path.isfile(ca_file):
        raise ConnectorProblem(f"ca_file: no file at {ca_file}")
    return LdapSettings(url=url, scheme=scheme, host=host, port=port, bind_dn=bind_dn,
                        bind_password=bind_password, group_dn=group_dn, attribute=attribute,
                        template=template, start_tls=start_tls, ca_file=ca_file,
                        allow_plain=allow_plain)


def _checked_url(url: str) -> tuple[str, str, int]:
    """Never repeated in a message: a mistyped URL may hold a password."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConnectorProblem("url: give ldaps://host:636 or ldap://host:389")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConnectorProblem("url: give only the scheme, host and port, e.g. ldaps://host:636")
    try:
        return parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ConnectorProblem("url: the port is not a number") from None


class VerifiedTls(ldap3.Tls):
    """TLS that verifies the server's certificate and name with the ssl module: ldap3's own
    name check predates IP-address names in certificates."""

    def __init__(self, host: str, ca_file: str | None):
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self.host = host
        self.context = ssl.create_default_context(cafile=ca_file)  # CERT_REQUIRED, names

    def wrap_socket(self, connection, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(
            connection.socket, server_hostname=self.host,
            do_handshake_on_connect=do_handshake)


# --- The target -------------------------------------------------------------------------------

class LdapGroupTarget(Target):
    def login_key(self, login: str) -> str:
        """One key per member whatever way it is written. With `member`, a login given as a
        DN of the template's form is that login, and any other DN is compared by its parsed
        RDNs; the directory matches DN values regardless of case, so uid=Alice added by hand
        is alice's membership, not drift. memberUid matches exactly (caseExactIA5Match)."""
        template = self.settings.template
        if template is None:
            return login
        if is_dn(login):
            named = template.login(login)
            if named is None:
                return "dn:" + "|".join(",".join(sorted(f"{a}={v}" for a, v in _rdn_key(rdn)))
                                        for rdn in parse_dn(login))
            login = named
        return login.casefold()

    SETTINGS = (
        Setting("url", "ldaps://host:636, or ldap://host:389 (then StartTLS unless start_tls "
                "is false)", store="server_url", required=True),
        Setting("bind_dn", "The DN the connector binds as; it needs write access to the "
                "group's member attribute", store="bind_dn", required=True),
        Setting("bind_password", "The bind DN's password", store="bind_password",
                required=True),
        Setting("group_dn", "The group's DN, e.g. cn=prod-admins,ou=groups,dc=example,dc=org",
                store="target", required=True),
        Setting("member_attribute", "member (default: groupOfNames and the like; values are "
                "DNs) or memberUid (posixGroup; values are uids)",
                choices=(MEMBER, MEMBER_UID), default=MEMBER),
        Setting("user_dn_template", f"A member's DN with {LOGIN} for the login, e.g. "
                f"uid={LOGIN},ou=people,dc=example,dc=org (required with member)"),
        Setting("start_tls", "With ldap://, protect the connection with StartTLS (default "
                "true); ldaps:// is always protected", kind="bool", default=True),
        Setting("ca_file", "Path of the CA certificate that signed the server's certificate "
                "(default: the system's trusted CAs); the certificate is always verified"),
        Setting("allow_plain", "Allow ldap:// without StartTLS (default false). The bind "
                "password then crosses the network in clear: for a lab only", kind="bool",
                default=False),
    )

    def __init__(self, connector):
        super().__init__(connector)
        self._settings: LdapSettings | None = None
        self._connection: ldap3.Connection | None = None

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        checked_settings(settings.secrets.get("server_url", ""),
                         settings.secrets.get("bind_dn", ""),
                         settings.secrets.get("bind_password", ""), settings.target_name,
                         settings.options)

    @property
    def settings(self) -> LdapSettings:
        if self._settings is None:
            connector = self.connector
            try:
                self._settings = checked_settings(
                    secret(connector, "server_url"), secret(connector, "bind_dn"),
                    secret(connector, "bind_password"), connector.target_name,
                    connector.options)
            except ConnectorProblem as problem:
                raise DeliveryError(f"the connector's option {problem}",
                                    retryable=False) from None
        return self._settings

    # --- the four calls ----------------------------------------------------------------------

    def grant(self, login: str, notice: Notice | None = None) -> str:
        value = self._value(login)
        if self.settings.attribute == MEMBER:
            self._require_entry(value)
        result = self._modify([(ldap3.MODIFY_ADD, value)])
        group = self.settings.group_dn
        if result["result"] == SUCCESS:
            return f"added {value} to {group}"
        if result["result"] == VALUE_EXISTS:
            return f"{value} was already in {group}"
        raise self._modify_refused(result, value)

    def revoke(self, login: str, notice: Notice | None = None) -> str:
        value = self._value(login)
        result = self._modify([(ldap3.MODIFY_DELETE, value)])
        group, attribute = self.settings.group_dn, self.settings.attribute
        if result["result"] == SUCCESS:
            return f"removed {value} from {group}"
        if result["result"] == NO_SUCH_ATTRIBUTE:
            return f"{value} was not in {group}"
        if result["result"] == OBJECT_CLASS_VIOLATION:
            raise DeliveryError(f"the directory cannot remove {value}: it is the last "
                                f"{attribute} of {group}, and the group's object class "
                                "requires one (objectClassViolation). "
                                + self._placeholder_advice(), retryable=False)
        raise self._modify_refused(result, value)

    def members(self) -> set[str]:
        settings = self.settings
        attribute = settings.attribute
        group = self._read_group(attribute)
        if any(name.lower().startswith(f"{attribute.lower()};range=")
               for name in group["raw_attributes"]):
            raise DeliveryError(f"the directory sends {attribute} in ranges (Active Directory "
                                "beyond 1,500 members), which this connector does not read",
                                retryable=False)
        values = _values(group, attribute)
        if settings.template is None:
            return set(values)
        return {settings.template.login(value) or value for value in values}

    def check(self) -> str:
        try:
            return self._check()
        except DeliveryError as error:
            raise ConnectorProblem(str(error)) from None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            _discard(connection)

    # --- steps ------------------------------------------------------------------------------

    def _check(self) -> str:
        settings = self.settings
        classes = _values(self._read_group("objectClass"), "objectClass")
        probe = self._probe_write()
        words = (f"Connected over {settings.protection} to {settings.url} as "
                 f"{settings.bind_dn}. The group {settings.group_dn} exists "
                 f"({', '.join(classes)}). The bind DN may change its {settings.attribute}: "
                 f"tested by adding and removing {probe} in one change, which leaves the "
                 "group as it was.")
        if settings.plain:
            words += " The bind password crossed the network in clear."
        return words

    def _probe_write(self) -> str:
        """Add and remove one value in a single change (or remove and re-add it when the
        group has it): the server checks the bind DN's rights to both, and the group ends as
        it was. Directories do not say otherwise what a DN may write. The group's schema is
        not tested (it is checked once the change is whole): a group that cannot hold the
        attribute says so at the first grant."""
        settings = self.settings
        probe = PROBE_UID
        if settings.attribute == MEMBER:
            probe = settings.bind_dn if is_dn(settings.bind_dn) else (
                f"cn={PROBE_UID},{settings.group_dn}")
        result = self._modify([(ldap3.MODIFY_ADD, probe), (ldap3.MODIFY_DELETE, probe)])
        if result["result"] == VALUE_EXISTS:
            result = self._modify([(ldap3.MODIFY_DELETE, probe), (ldap3.MODIFY_ADD, probe)])
        if result["result"] != SUCCESS:
            raise self._modify_refused(result, probe)
        return probe

    def _read_group(self, attribute: str) -> dict:
        result, response = self._call("search", self.settings.group_dn, "(objectClass=*)",
                                      ldap3.BASE, attributes=[attribute])
        if result["result"] == NO_SUCH_OBJECT:
            raise self._no_group()
        if result["result"] != SUCCESS:
            raise self._refused(result, f"read {self.settings.group_dn}")
        entries = _entries(response)
        if not entries:
            raise self._no_group()
        return entries[0]

    def _value(self, login: str) -> str:
        settings = self.settings
        if not login:
            raise DeliveryError("an empty login cannot be a member", retryable=False)
        if settings.template is None or is_dn(login):
            return login
        return settings.template.dn(login)

    def _require_entry(self, dn: str) -> None:
        result, response = self._call("search", dn, "(objectClass=*)", ldap3.BASE,
                                      attributes=["1.1"])
        if result["result"] not in (SUCCESS, NO_SUCH_OBJECT, INVALID_DN_SYNTAX):
            raise self._refused(result, f"read {dn}")
        if not _entries(response):
            raise DeliveryError(f"the directory has no entry {dn}", retryable=False)

    def _modify(self, changes: list[tuple[str, str]]) -> dict:
        settings = self.settings
        result, _ = self._call("modify", settings.group_dn, {
            settings.attribute: [(operation, [value]) for operation, value in changes]})
        return result

    # --- the connection ---------------------------------------------------------------------

    def _call(self, method: str, *args, **kwargs) -> tuple[dict, list]:
        """One request on the kept connection: its result and response."""
        if self._connection is not None:
            try:
                return self._request(self._connection, method, *args, **kwargs)
            except ldap_errors.LDAPException:
                # Cut while kept (the server restarted): once more on a new connection, as
                # every request made here may be repeated safely.
                self.close()
        try:
            return self._request(self._connected(), method, *args, **kwargs)
        except ldap_errors.LDAPException as error:
            self.close()
            raise self._unreachable(error) from None

    @staticmethod
    def _request(connection: ldap3.Connection, method: str, *args, **kwargs) -> tuple[dict, list]:
        getattr(connection, method)(*args, **kwargs)
        return connection.result, connection.response or []

    def _connected(self) -> ldap3.Connection:
        if self._connection is not None:
            return self._connection
        settings = self.settings
        server = ldap3.Server(settings.host, port=settings.port,
                              use_ssl=settings.scheme == "ldaps",
                              tls=VerifiedTls(settings.host, settings.ca_file),
                              connect_timeout=TIMEOUT_SECONDS, get_info=ldap3.NONE)
        connection = ldap3.Connection(server, user=settings.bind_dn,
                                      password=settings.bind_password,
                                      receive_timeout=TIMEOUT_SECONDS, raise_exceptions=False,
                                      auto_referrals=False, check_names=False)
        try:
            connection.open(read_server_info=False)
            # Otherwise each request over TLS waits ~40 ms for the server's delayed
            # acknowledgement (Nagle's algorithm).
            connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if settings.scheme == "ldap" and not settings.plain and not connection.start_tls(
                    read_server_info=False):
                said = (connection.result or {}).get("description", "no answer")
                raise DeliveryError(f"the directory at {settings.url} refused StartTLS "
                                    f"({said})", retryable=False)
            if not connection.bind(read_server_info=False):
                raise self._refused(connection.result, "bind")
        except ldap_errors.LDAPException as error:
            _discard(connection)
            raise self._unreachable(error) from None
        except DeliveryError:
            _discard(connection)
            raise
        self._connection = connection
        return connection

    # --- failures in plain words --------------------------------------------------------------

    def _unreachable(self, error: Exception) -> DeliveryError:
        url = self.settings.url
        if "certificate" in str(error).lower():
            return DeliveryError(f"the certificate of {url} was not accepted: {error}",
                                 retryable=False)
        if isinstance(error, ldap_errors.LDAPCommunicationError | ldap_errors.LDAPStartTLSError
                      | ldap_errors.LDAPResponseTimeoutError):
            return DeliveryError(f"cannot reach the directory at {url}: {error}")
        return DeliveryError(f"the LDAP client refused the request: {error}", retryable=False)

    def _refused(self, result: dict, action: str) -> DeliveryError:
        settings, code = self.settings, result["result"]
        said = f"{result['description']}: {result['message']}".rstrip(": ")
        if code == INVALID_CREDENTIALS:
            return DeliveryError("the directory refused the bind DN or password "
                                 "(invalidCredentials)", retryable=False)
        if code == INSUFFICIENT_ACCESS:
            return DeliveryError(f"{settings.bind_dn} may not {action} "
                                 "(insufficientAccessRights)", retryable=False)
        if code == CONFIDENTIALITY_REQUIRED:
            return DeliveryError(f"the directory requires a protected connection ({said})",
                                 retryable=False)
        return DeliveryError(f"the directory refused to {action} ({said})",
                             retryable=code in PASSING)

    def _placeholder_advice(self) -> str:
        template = self.settings.template
        if template is None:
            return ("Give the group a placeholder member that is no one's login and list it "
                    "in this connector's ignore_logins.")
        return (f"Give the group a placeholder member that is no one's access, such as "
                f"{template.dn(PLACEHOLDER)}, and list {PLACEHOLDER} in this connector's "
                "ignore_logins.")

    def _no_group(self) -> DeliveryError:
        settings = self.settings
        return DeliveryError(f"the directory has no group {settings.group_dn} (or hides it "
                             f"from {settings.bind_dn})", retryable=False)

    def _modify_refused(self, result: dict, value: str) -> DeliveryError:
        settings, code = self.settings, result["result"]
        if code == NO_SUCH_OBJECT:
            return self._no_group()
        if code == OBJECT_CLASS_VIOLATION:
            return DeliveryError(f"{settings.group_dn} does not take {settings.attribute} "
                                 f"values (objectClassViolation: {result['message']}); choose "
                                 "the member_attribute its object class has", retryable=False)
        if code in (INVALID_SYNTAX, INVALID_DN_SYNTAX):
            return DeliveryError(f"the directory refused {value!r} as a {settings.attribute} "
                                 f"value ({result['description']}: {result['message']})",
                                 retryable=False)
        return self._refused(result, f"change {settings.attribute} of {settings.group_dn}")


def _entries(response: list) -> list[dict]:
    return [item for item in response if item["type"] == "searchResEntry"]


def _values(entry: dict, attribute: str) -> list[str]:
    """An entry's values of `attribute`, as text, whatever case the server names it in."""
    for name, values in entry["raw_attributes"].items():
        if name.lower() == attribute.lower():
            return [value.decode() for value in values]
    return []


def _discard(connection: ldap3.Connection) -> None:
    """Unbind and close, even when the server is gone."""
    with contextlib.suppress(ldap_errors.LDAPException):
        connection.unbind()
    # ldap3 leaves the socket open when the connection or the unbind failed.
    if connection.socket is not None:
        connection.socket.close()

"""A MariaDB or MySQL 8 role: access is holding it (`GRANT role TO 'login'@'host'`) and, by
default, having it as the login's default role, so it is active as soon as the login signs in.

The connecting account needs the role WITH ADMIN OPTION (on MariaDB even ALL PRIVILEGES WITH
GRANT OPTION is not enough; MySQL also accepts ROLE_ADMIN), SELECT on the mysql database
(members are read from its grant tables) and, to set default roles, UPDATE on it.

Accounts that hold the role WITH ADMIN OPTION administer it (the connecting account among
them): they are not counted as members, so reconciliation never revokes them."""

import contextlib
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql

from audit.outbox import DeliveryError
from breakglass.connectors.base import ConnectorProblem, Notice, Setting, Settings, Target, secret

TIMEOUT_SECONDS = 10
DEFAULT_PORT = 3306
# The longest user or role name each server takes: MariaDB 10.6 and later 128, MySQL 8 32.
MAX_NAME_LENGTH = {"MariaDB": 128, "MySQL": 32}
MAX_HOST_LENGTH = 255

# Server error codes (ER_* in the servers' errmsg files), by what they mean here.
UNKNOWN_LOGIN = 1133  # no such user@host (GRANT never creates one: see _open)
UNKNOWN_ROLE = 1959
UNKNOWN_ROLE_OR_LOGIN = {3523}  # MySQL's "unknown authorization ID": it does not say which
NOT_A_MEMBER = {1962}  # MariaDB: REVOKE of a role the login does not hold
CANNOT_GRANT = 1961  # MariaDB: e.g. a grant that would make a cycle of roles
ACCESS_DENIED = {1044, 1045, 1142, 1227, 1698}
NAME_TOO_LONG = 1470
SERVER_GOING_AWAY = {1040, 1053, 1927}  # too many connections, shutting down, killed

MARIADB = {
    "members": """SELECT User FROM mysql.roles_mapping
                   WHERE Role = %(role)s AND Host = %(host)s AND Admin_option = 'N'""",
    "role_exists": "SELECT 1 FROM mysql.user WHERE User = %(role)s AND is_role = 'Y'",
    # One row if the login exists: whether it holds the role (with admin option or not).
    "login": """SELECT EXISTS (SELECT 1 FROM mysql.roles_mapping m
                                WHERE m.User = u.User AND m.Host = u.Host AND m.Role = %(role)s)
                  FROM mysql.user u WHERE u.User = %(login)s AND u.Host = %(host)s
                   AND u.is_role = 'N'""",
    # MariaDB has one default role per account; roles have no host part.
    "defaults": """SELECT default_role, '' FROM mysql.user
                    WHERE User = %(login)s AND Host = %(host)s AND default_role <> ''""",
    "rights": """SELECT
        EXISTS (SELECT 1 FROM information_schema.APPLICABLE_ROLES
                 WHERE ROLE_NAME = %(role)s AND IS_GRANTABLE = 'YES'),
        EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES
                 WHERE GRANTEE = %(grantee)s AND PRIVILEGE_TYPE = 'UPDATE'
                UNION ALL SELECT 1 FROM information_schema.SCHEMA_PRIVILEGES
                 WHERE GRANTEE = %(grantee)s AND TABLE_SCHEMA = 'mysql'
                   AND PRIVILEGE_TYPE = 'UPDATE')""",
}
# MySQL roles are accounts with a host part; a role named without one is role@'%'.
MYSQL = {
    "members": """SELECT TO_USER FROM mysql.role_edges
                   WHERE FROM_USER = %(role)s AND FROM_HOST = %(any)s AND TO_HOST = %(host)s
                     AND WITH_ADMIN_OPTION = 'N'""",
    "role_exists": "SELECT 1 FROM mysql.user WHERE User = %(role)s AND Host = %(any)s",
    "login": """SELECT EXISTS (SELECT 1 FROM mysql.role_edges e
                                WHERE e.TO_USER = u.User AND e.TO_HOST = u.Host
                                  AND e.FROM_USER = %(role)s AND e.FROM_HOST = %(any)s)
                  FROM mysql.user u WHERE u.User = %(login)s AND u.Host = %(host)s""",
    "defaults": """SELECT DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST FROM mysql.default_roles
                    WHERE USER = %(login)s AND HOST = %(host)s""",
    "rights": """SELECT
        EXISTS (SELECT 1 FROM information_schema.APPLICABLE_ROLES
                 WHERE ROLE_NAME = %(role)s AND ROLE_HOST = %(any)s AND IS_GRANTABLE = 'YES'
                UNION ALL SELECT 1 FROM information_schema.USER_PRIVILEGES
                 WHERE GRANTEE = %(grantee)s AND PRIVILEGE_TYPE IN ('ROLE_ADMIN', 'SUPER')),
        EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES
                 WHERE GRANTEE = %(grantee)s AND PRIVILEGE_TYPE IN ('CREATE USER', 'UPDATE')
                UNION ALL SELECT 1 FROM information_schema.SCHEMA_PRIVILEGES
                 WHERE GRANTEE = %(grantee)s AND TABLE_SCHEMA = 'mysql'
                   AND PRIVILEGE_TYPE = 'UPDATE')""",
}


@dataclass(frozen=True)
class Server:
    """What the connection learnt about the server once, when it was opened."""

    flavour: str  # "MariaDB" or "MySQL"
    version: str
    account: str  # CURRENT_USER(): user@host, unquoted
    address: str

    def __str__(self) -> str:
        return f"{self.address} ({self.flavour} {self.version})"

    @property
    def grantee(self) -> str:
        """The account as information_schema names grantees: 'user'@'host'."""
        user, _, host = self.account.rpartition("@")
        return f"'{user}'@'{host}'"


def parse_url(url: str) -> dict:
    """PyMySQL's connect arguments from mysql://user:password@host:port[?ssl_ca=/path]."""
    parts = urlsplit(url)
    if parts.scheme not in {"mysql", "mariadb"} or not parts.hostname:
        raise ConnectorProblem("url: give mysql://user:password@host:port "
                               "(or mariadb://...; add ?ssl_ca=/path/to/ca.pem for TLS)")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConnectorProblem("url: the port is not a number from 1 to 65535") from None
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - {"ssl_ca"})
    if unknown:
        raise ConnectorProblem(f"url: unknown parameters {', '.join(unknown)} (only ssl_ca "
                               "is understood)")
    arguments = {"host": parts.hostname, "port": port, "user": unquote(parts.username or ""),
                 "password": unquote(parts.password or "")}
    if query.get("ssl_ca"):
        # PyMySQL checks neither the certificate nor the host name unless asked to.
        arguments.update(ssl_ca=query["ssl_ca"], ssl_verify_cert=True, ssl_verify_identity=True)
    return arguments


def check_name(name: str, what: str, longest: int) -> str:
    """Refuse a name the server would not store as given."""
    if not name or "\x00" in name:
        raise ConnectorProblem(f"the {what} name is empty or holds a NUL character")
    if name != name.rstrip(" "):
        # Grant tables are CHAR columns: trailing spaces are dropped when a name is stored
        # and ignored when one is compared, so 'bob ' would read as 'bob'.
        raise ConnectorProblem(f"the {what} {name!r} ends in a space")
    if any(ord(character) > 0xFFFF for character in name):
        # Grant tables are utf8mb3, which reads these as '?': 'bob<emoji>' would be 'bob?'.
        raise ConnectorProblem(f"the {what} {name!r} holds a character beyond U+FFFF "
                               "(such as an emoji), which MariaDB and MySQL names cannot hold")
    if len(name) > longest:
        raise ConnectorProblem(f"the {what} {name!r} is longer than the server's {longest} "
                               "characters")
    return name


class MariaDBRoleTarget(Target):
    SETTINGS = (
        Setting("url", "mysql://user:password@host:port of the target server (or mariadb://; "
                "add ?ssl_ca=/path/to/ca.pem to require TLS)", store="server_url",
                required=True),
        Setting("role", "The role access gives, e.g. prod_admin.", store="target",
                required=True),
        Setting("user_host", "The host part of the logins' accounts, 'login'@'host' "
                "(default %).", default="%"),
        Setting("default_role", "Also make the role the login's default role, active at "
                "sign-in (on MariaDB, which keeps one, in place of any other), and clear it on "
                "revoke (default true).", kind="bool", default=True),
    )

    def __init__(self, connector):
        super().__init__(connector)
        self._connection: pymysql.Connection | None = None
        self._server: Server | None = None

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        parse_url(settings.secrets.get("server_url", ""))
        for key, name, what, longest in (
                ("role", settings.target_name, "role", MAX_NAME_LENGTH["MariaDB"]),
                ("user_host", settings.options.get("user_host", "%"), "host", MAX_HOST_LENGTH)):
            try:
                check_name(name, what, longest)
            except ConnectorProblem as problem:
                raise ConnectorProblem(f"{key}: {problem}") from None

    @property
    def role(self) -> str:
        return self.connector.target_name

    @property
    def user_host(self) -> str:
        return self.connector.options.get("user_host", "%")

    @property
    def sets_default_role(self) -> bool:
        return self.connector.options.get("default_role", True) is not False

    # --- connection -----------------------------------------------------------------------

    def _arguments(self) -> dict:
        return parse_url(secret(self.connector, "server_url"))

    def _address(self) -> str:
        arguments = self._arguments()
        return f"{arguments['host']}:{arguments['port']}"

    def _open(self) -> Server:
        """The connection, opened on first use and pinged after that, so that one the server
        dropped (a restart, wait_timeout) is replaced instead of failing the call."""
        if self._connection is not None:
            try:
                self._connection.ping()
            except pymysql.MySQLError:
                self.close()
        if self._connection is None:
            try:
                self._connection = pymysql.connect(
                    **self._arguments(), charset="utf8mb4", autocommit=True,
                    connect_timeout=TIMEOUT_SECONDS, read_timeout=TIMEOUT_SECONDS,
                    write_timeout=TIMEOUT_SECONDS)
                (version, account), = self._run("SELECT VERSION(), CURRENT_USER()")
                flavour = "MariaDB" if "mariadb" in version.lower() else "MySQL"
                if flavour == "MariaDB":
                    # Without NO_AUTO_CREATE_USER, MariaDB's GRANT creates a missing login,
                    # with no password. MySQL 8 never does (and rejects the mode).
                    self._run("SET SESSION sql_mode = 'NO_AUTO_CREATE_USER'")
            except pymysql.MySQLError as exc:
                self.close()
                raise self._unreachable(exc) from exc
            self._server = Server(flavour, version.split("-")[0], account, self._address())
        return self._server

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.open:
            with contextlib.suppress(pymysql.MySQLError, OSError):
                connection.close()

    def _run(self, statement: str, params: dict | None = None) -> list[tuple]:
        """One statement on the open connection. A lost connection is closed (the next call
        opens another) and raised as a retryable DeliveryError; a refusal is raised as is."""
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(statement, params)
                return list(cursor.fetchall())
        except pymysql.MySQLError as exc:
            if not _connection_lost(exc):
                raise
            self.close()
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> DeliveryError:
        if _code(exc) in ACCESS_DENIED:
            return DeliveryError(f"{self._address()} refused the connecting account: "
                                 f"{_message(exc)}", retryable=False)
        return DeliveryError(f"the database server at {self._address()} cannot be reached: "
                             f"{_message(exc)}")

    def _query(self, name: str, login: str = "") -> list[tuple]:
        """One of the flavour's read queries; names are bound parameters."""
        queries = MARIADB if self._server.flavour == "MariaDB" else MYSQL
        return self._run(queries[name], {
            "role": self.role, "login": login, "host": self.user_host, "any": "%",
            "grantee": self._server.grantee})

    # --- the four calls -------------------------------------------------------------------

    def grant(self, login: str, notice: Notice | None = None) -> str:
        self._open()
        role, account = self._quoted_names(login)
        try:
            self._run(f"GRANT {role} TO {account}")  # held already: no error, no change
            if self.sets_default_role:
                defaults = self._default_roles(login)
                if (self.role, self._role_host) not in defaults:
                    # MariaDB keeps one default role; MySQL a list, which is extended.
                    kept = defaults if self._server.flavour == "MySQL" else []
                    self._set_default_roles(account, [*kept, (self.role, self._role_host)])
        except pymysql.MySQLError as exc:
            raise self._refusal(login, exc) from exc
        return f"mariadb:{self.role}:granted"

    def revoke(self, login: str, notice: Notice | None = None) -> str:
        self._open()
        role, account = self._quoted_names(login)
        try:
            rows = self._query("login", login)
            if not rows:
                return f"mariadb:{self.role}:absent"  # no such login: it holds nothing
            if rows[0][0]:
                self._revoke(role, account)
            defaults = self._default_roles(login) if self.sets_default_role else []
            if (self.role, self._role_host) in defaults:
                # REVOKE leaves the default behind on MariaDB: a later grant by hand would
                # make the role active at sign-in again.
                self._set_default_roles(account, [
                    entry for entry in defaults if entry != (self.role, self._role_host)])
        except pymysql.MySQLError as exc:
            raise self._refusal(login, exc) from exc
        return f"mariadb:{self.role}:" + ("revoked" if rows[0][0] else "absent")

    def members(self) -> set[str]:
        self._open()
        return {user for (user,) in self._query("members")}

    def check(self) -> str:
        try:
            server = self._open()
        except DeliveryError as exc:
            raise ConnectorProblem(str(exc)) from None
        check_name(self.role, "role", MAX_NAME_LENGTH[server.flavour])
        try:
            may_grant, may_set_default = self._query("rights")[0]
            try:
                role_exists, count = bool(self._query("role_exists")), len(self.members())
            except pymysql.MySQLError as exc:
                if _code(exc) not in ACCESS_DENIED:
                    raise
                role_exists, count = bool(may_grant), None  # cannot read the mysql database
        except (DeliveryError, pymysql.MySQLError) as exc:
            raise ConnectorProblem(f"{_message(exc)} ({server})") from None
        if not role_exists:
            raise ConnectorProblem(f"the role {self.role!r} does not exist on {server}")
        missing = self._missing_rights(may_grant, may_set_default, count is not None)
        if missing:
            raise ConnectorProblem(f"connected as {server.grantee} to {server}, but this "
                                   f"account lacks {'; and '.join(missing)}")
        default = " and make it the default role" if self.sets_default_role else ""
        members = "1 member" if count == 1 else f"{count} members"
        protection = ("over TLS, server verified" if "ssl_ca" in self._arguments() else
                      "without verified TLS (add ?ssl_ca=/path/to/ca.pem to require it)")
        return (f"Connected as {server.grantee} to {server} {protection}. The role "
                f"{self.role!r} exists with {members} among the {self.user_host!r} accounts; "
                f"this account may grant it{default}.")

    # --- helpers --------------------------------------------------------------------------

    def _quoted_names(self, login: str) -> tuple[str, str]:
        """The role and the login's account as SQL text. GRANT, REVOKE and SET DEFAULT ROLE
        take no bound parameters for names, so they are quoted here, and only here: the role
        as an identifier in backticks (a backtick inside doubled), user and host as string
        literals escaped by the connection, which follows the session's sql_mode."""
        longest = MAX_NAME_LENGTH[self._server.flavour]
        try:
            check_name(self.role, "role", longest)
            check_name(login, "login", longest)
            check_name(self.user_host, "host", MAX_HOST_LENGTH)
        except ConnectorProblem as problem:
            raise DeliveryError(str(problem), retryable=False) from None
        account = f"{self._connection.escape(login)}@{self._connection.escape(self.user_host)}"
        return _identifier(self.role), account

    @property
    def _role_host(self) -> str:
        """MySQL roles are accounts, role@'%' when named alone; MariaDB roles have no host."""
        return "" if self._server.flavour == "MariaDB" else "%"

    def _revoke(self, role: str, account: str) -> None:
        try:
            self._run(f"REVOKE {role} FROM {account}")
        except pymysql.MySQLError as exc:
            if _code(exc) not in NOT_A_MEMBER:  # revoked by someone else meanwhile
                raise

    def _default_roles(self, login: str) -> list[tuple[str, str]]:
        return [(name, host) for name, host in self._query("defaults", login)]

    def _set_default_roles(self, account: str, roles: list[tuple[str, str]]) -> None:
        names = ", ".join(_identifier(name) + (f"@{_identifier(host)}" if host else "")
                          for name, host in roles) or "NONE"
        preposition = "FOR" if self._server.flavour == "MariaDB" else "TO"
        self._run(f"SET DEFAULT ROLE {names} {preposition} {account}")

    def _missing_rights(self, may_grant: bool, may_set_default: bool, may_read: bool) -> list:
        missing = []
        if not may_grant:
            missing.append(f"the role {self.role!r} WITH ADMIN OPTION, needed to grant it "
                           f"(GRANT {_identifier(self.role)} TO {self._server.grantee} "
                           "WITH ADMIN OPTION)")
        if not may_read:
            missing.append("SELECT on the mysql database, needed to read the role's members")
        if self.sets_default_role and not may_set_default:
            missing.append("UPDATE on the mysql database, needed to set default roles "
                           "(or set default_role=false)")
        return missing

    def _refusal(self, login: str, exc: pymysql.MySQLError) -> DeliveryError:
        """Which name the server did not know, or which right it lacked, in plain words."""
        code, server = _code(exc), self._server
        account = f"'{login}'@'{self.user_host}'"
        if code in UNKNOWN_ROLE_OR_LOGIN:
            code = UNKNOWN_LOGIN if self._query("role_exists") else UNKNOWN_ROLE
        if code == UNKNOWN_LOGIN:
            return DeliveryError(f"the login {account} does not exist on {server}",
                                 retryable=False)
        if code == UNKNOWN_ROLE:
            return DeliveryError(f"the role {self.role!r} does not exist on {server}",
                                 retryable=False)
        if code in ACCESS_DENIED or code == CANNOT_GRANT:
            return DeliveryError(f"{server.grantee} may not give or take {self.role!r} for "
                                 f"{account} on {server}: {_message(exc)}", retryable=False)
        if code == NAME_TOO_LONG:
            return DeliveryError(f"{server} refused a name as too long: {_message(exc)}",
                                 retryable=False)
        return DeliveryError(f"{server} refused to change {self.role!r} for {account}: "
                             f"{_message(exc)}")


def _identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _connection_lost(exc: Exception) -> bool:
    """Client-side errors (2000 and up, or none) and the server going away, not a refusal."""
    code = _code(exc)
    return code == 0 or code >= 2000 or code in SERVER_GOING_AWAY


def _code(exc: Exception) -> int:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0


def _message(exc: Exception) -> str:
    if isinstance(exc, DeliveryError):
        return str(exc)
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    return (str(text).strip().splitlines() or [type(exc).__name__])[0]

"""A PostgreSQL role: access is membership (`GRANT <role> TO <login>`), on a server the
operator names by URL. Identifiers always go through psycopg.sql.Identifier, never formatted.

The connecting account needs the right to grant the role: superuser, or the role WITH ADMIN
OPTION (PostgreSQL 16 and later), or CREATEROLE (up to 15)."""

from urllib.parse import urlsplit

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict

from audit.outbox import DeliveryError
from breakglass.connectors.base import ConnectorProblem, Notice, Setting, Settings, Target, secret

# PostgreSQL silently cuts identifiers to 63 bytes: a longer login could name another role.
MAX_IDENTIFIER_BYTES = 63
TIMEOUT_SECONDS = 10

# Accounts holding the role WITH ADMIN OPTION manage it (the connecting account, and from
# PostgreSQL 16 the account that created the role): they are the role's administrators,
# never members to reconcile.
MEMBERS_SQL = """SELECT DISTINCT m.rolname FROM pg_auth_members am
  JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
 WHERE r.rolname = %s AND m.rolname <> current_user AND NOT am.admin_option
   AND NOT EXISTS (SELECT 1 FROM pg_auth_members a
                    WHERE a.roleid = am.roleid AND a.member = am.member AND a.admin_option)"""
GRANTORS_SQL = """SELECT g.rolname FROM pg_auth_members am
  JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
  JOIN pg_roles g ON g.oid = am.grantor
 WHERE r.rolname = %s AND m.rolname = %s"""
RIGHTS_SQL = """SELECT current_user, r.rolsuper, r.rolcreaterole,
       EXISTS (SELECT 1 FROM pg_auth_members am JOIN pg_roles t ON t.oid = am.roleid
                WHERE t.rolname = %s AND am.member = r.oid AND am.admin_option),
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s),
       current_setting('server_version_num')::int
  FROM pg_roles r WHERE r.rolname = current_user"""


def check_identifier(name: str, what: str) -> str:
    if not name or "\x00" in name:
        raise ConnectorProblem(f"the {what} name is empty or holds a NUL character")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConnectorProblem(f"the {what} {name!r} is longer than PostgreSQL's "
                               f"{MAX_IDENTIFIER_BYTES} bytes")
    return name


class PostgresRoleTarget(Target):
    SETTINGS = (
        Setting("url", "postgres://user:password@host:port/database of the target server "
                "(add ?sslmode=verify-full to require TLS)", store="server_url", required=True),
        Setting("role", "The role access gives, e.g. prod_admin.", store="target",
                required=True),
    )

    def __init__(self, connector):
        super().__init__(connector)
        self._connection: psycopg.Connection | None = None

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        text = settings.secrets.get("server_url", "")
        url = urlsplit(text)
        if url.scheme not in {"postgres", "postgresql"} or not url.hostname:
            raise ConnectorProblem("url: give postgres://user:password@host:port/database")
        try:
            url.port  # noqa: B018 (a bad port raises here, not at the first delivery)
            conninfo_to_dict(text)
        except (ValueError, psycopg.ProgrammingError) as error:
            # Never repeat the URL: it holds a password.
            raise ConnectorProblem(f"url: not a usable PostgreSQL URL "
                                   f"({type(error).__name__})") from None
        try:
            check_identifier(settings.target_name, "role")
        except ConnectorProblem as problem:
            raise ConnectorProblem(f"role: {problem}") from None

    # --- connection -----------------------------------------------------------------------

    @property
    def role(self) -> str:
        return self.connector.target_name

    def _server(self) -> str:
        url = urlsplit(secret(self.connector, "server_url"))
        return f"{url.hostname}:{url.port or 5432}"

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                secret(self.connector, "server_url"), autocommit=True,
                connect_timeout=TIMEOUT_SECONDS, application_name="breakglass-connector",
                options=f"-c statement_timeout={TIMEOUT_SECONDS * 1000}")
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _execute(self, statement, params=None) -> list[tuple]:
        """Run one statement. A kept connection the server dropped (a restart) is replaced
        once; the statements are idempotent, so running one again is safe."""
        for fresh in (self._connection is None or self._connection.closed, True):
            try:
                with self._connect().cursor() as cursor:
                    cursor.execute(statement, params)
                    return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError as exc:
                self.close()
                if fresh:
                    raise DeliveryError(f"PostgreSQL at {self._server()} is unreachable: "
                                        f"{_first_line(exc)}") from exc
        raise AssertionError("unreachable: the second pass always runs fresh")

    # --- the four calls -------------------------------------------------------------------

    def grant(self, login: str, notice: Notice | None = None) -> str:
        statement = sql.SQL("GRANT {} TO {}").format(*self._identifiers(login))
        try:
            self._execute(statement)  # already a member: a notice, not an error
        except (errors.UndefinedObject, errors.InsufficientPrivilege) as exc:
            raise self._refusal(login, exc) from exc
        return f"postgres:{self.role}:granted"

    def revoke(self, login: str, notice: Notice | None = None) -> str:
        role, member = self._identifiers(login)
        try:
            self._execute(sql.SQL("REVOKE {} FROM {}").format(role, member))
            # From PostgreSQL 16 a membership is one grant per grantor, and REVOKE removes
            # only the current user's: a membership granted by hand stays. Remove each.
            for (grantor,) in self._execute(GRANTORS_SQL, [self.role, login]):
                self._execute(sql.SQL("REVOKE {} FROM {} GRANTED BY {}").format(
                    role, member, sql.Identifier(grantor)))
        except errors.UndefinedObject:
            return f"postgres:{self.role}:absent"  # no such login: it holds nothing
        except errors.InsufficientPrivilege as exc:
            raise self._refusal(login, exc) from exc
        if self._execute(GRANTORS_SQL, [self.role, login]):
            raise DeliveryError(f"{login!r} is still a member of {self.role!r} after REVOKE: "
                                "a grantor this account cannot act for granted it",
                                retryable=False)
        return f"postgres:{self.role}:revoked"

    def members(self) -> set[str]:
        return {name for (name,) in self._execute(MEMBERS_SQL, [self.role])}

    def check(self) -> str:
        try:
            rows = self._execute(RIGHTS_SQL, [self.role, self.role])
        except DeliveryError as exc:
            raise ConnectorProblem(str(exc)) from None
        account, superuser, createrole, admin_option, role_exists, version = rows[0]
        if not role_exists:
            raise ConnectorProblem(f"the role {self.role!r} does not exist on {self._server()}")
        may_grant = superuser or admin_option or (createrole and version < 160000)
        if not may_grant:
            needed = "ADMIN OPTION on the role" if version >= 160000 else (
                "CREATEROLE or ADMIN OPTION on the role")
            raise ConnectorProblem(f"{account!r} may not grant {self.role!r}: it needs "
                                   f"{needed} (or superuser)")
        how = "superuser" if superuser else "admin option" if admin_option else "CREATEROLE"
        count = len(self.members())
        return (f"Connected to PostgreSQL {version // 10000} at {self._server()} as "
                f"{account!r} ({how}) {self._protection()}; role {self.role!r} exists with "
                f"{count} members.")

    def _protection(self) -> str:
        """Whether the connection is encrypted and the server verified, in words."""
        mode = conninfo_to_dict(secret(self.connector, "server_url")).get("sslmode", "prefer")
        if not self._connect().info.pgconn.ssl_in_use:
            return "without TLS (add ?sslmode=verify-full to require it)"
        if mode == "verify-full":
            return "over TLS, server verified"
        return f"over TLS, server not verified (sslmode={mode}; use verify-full)"

    # --- helpers --------------------------------------------------------------------------

    def _identifiers(self, login: str) -> tuple[sql.Identifier, sql.Identifier]:
        try:
            check_identifier(self.role, "role")
            check_identifier(login, "login")
        except ConnectorProblem as problem:
            raise DeliveryError(str(problem), retryable=False) from None
        return sql.Identifier(self.role), sql.Identifier(login)

    def _refusal(self, login: str, exc: Exception) -> DeliveryError:
        """Which name the server did not know, or which right it lacked, in plain words."""
        if isinstance(exc, errors.InsufficientPrivilege):
            return DeliveryError(f"the connecting account may not grant {self.role!r} on "
                                 f"{self._server()}: {_first_line(exc)}", retryable=False)
        known = {name for (name,) in self._execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [[self.role, login]])}
        missing = "role" if self.role not in known else "login"
        name = self.role if missing == "role" else login
        return DeliveryError(f"the {missing} {name!r} does not exist on {self._server()}",
                             retryable=False)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

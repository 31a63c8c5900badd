"""A throwaway MariaDB server for the connector tests, started once per session: a fresh data
directory (mariadb-install-db), mariadbd on a free port of 127.0.0.1, an administrator
`breakglass_admin` that the connectors sign in as, and root on the Unix socket for the tests'
own reads and writes ("by hand", independent of the connector code).

Without mariadbd the tests skip; with BREAKGLASS_REQUIRE_MARIADB set (CI) they fail instead."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pymysql
import pytest

from tests.ports import free_port

ADMIN = "breakglass_admin"
ADMIN_PASSWORD = "admin password; with 'quotes'"
STARTUP_TIMEOUT_SECONDS = 30
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_string(text: str) -> str:
    """A string literal for a session with the default sql_mode (backslash escapes on)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def account(login: str, host: str = "%") -> str:
    return f"{quote_string(login)}@{quote_string(host)}"


class MariaDBServer:
    kind = "mariadb_role"  # Connector.Kind.MARIADB_ROLE

    def __init__(self, directory: Path, binaries: dict[str, str]):
        self.directory = directory
        self.binaries = binaries
        self.data = directory / "data"
        self.socket = directory / "mariadb.sock"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    # --- the fixture protocol ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"mysql://{ADMIN}:{quote(ADMIN_PASSWORD, safe='')}@127.0.0.1:{self.port}"

    def settings(self, target: str) -> dict[str, str]:
        return {"url": self.url, "role": target}

    def prepare_target(self, target: str) -> None:
        """Root creates the role, so holds it WITH ADMIN OPTION (and may add members by hand),
        and gives the same option to the connectors' administrator."""
        self.execute(f"CREATE ROLE IF NOT EXISTS {quote_identifier(target)}")
        self.execute(f"GRANT {quote_identifier(target)} TO {account(ADMIN)} WITH ADMIN OPTION")

    def create_login(self, login: str) -> None:
        self.execute(f"CREATE USER IF NOT EXISTS {account(login)}")

    def add_by_hand(self, target: str, login: str) -> None:
        self.execute(f"GRANT {quote_identifier(target)} TO {account(login)}")

    def members_by_hand(self, target: str) -> set[str]:
        """Every '%' account holding the role, administrators (admin option) aside."""
        rows = self.execute("SELECT User FROM mysql.roles_mapping WHERE Role = %s "
                            "AND Host = '%%' AND Admin_option = 'N'", [target])
        return {user for (user,) in rows}

    def roles(self) -> set[str]:
        """The names of every account and role on the server."""
        return {user for (user,) in self.execute("SELECT User FROM mysql.user")}

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binaries["server"], *self._options(), f"--port={self.port}",
             "--bind-address=127.0.0.1", "--skip-name-resolve",
             f"--log-error={self.directory / 'error.log'}",
             f"--pid-file={self.directory / 'mariadbd.pid'}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mariadbd did not start:\n{self.error_log()}")
            time.sleep(0.05)
        self._connect().close()

    def _accepts_connections(self) -> bool:
        # A plain socket, not PyMySQL: a refused PyMySQL connection leaks its socket.
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
            return True

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waited for, so start() finds the data directory free."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(timeout=STARTUP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # --- for the tests --------------------------------------------------------------------

    def execute(self, statement: str, params=None, *, database: str | None = None) -> list[tuple]:
        """One statement as root, on a connection of its own (in `database`, if named)."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                if database is not None:
                    connection.select_db(database)
                cursor.execute(statement, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def create_account(self, user: str, password: str, *grants: str) -> str:
        """A password account with the given GRANT statements ({account} is replaced by it);
        its connector URL."""
        self.execute(f"CREATE USER IF NOT EXISTS {account(user)} "
                     f"IDENTIFIED BY {quote_string(password)}")
        for grant in grants:
            self.execute(grant.format(account=account(user)))
        return f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def default_role(self, login: str) -> str:
        (role,), = self.execute("SELECT default_role FROM mysql.user "
                                "WHERE User = %s AND Host = '%%'", [login])
        return role

    def snapshot(self) -> dict:
        """Everything grants can change: accounts (with their privileges and default role),
        role mappings, and database, table and column privileges."""
        accounts = {}
        for user, host, privileges in self.execute("SELECT User, Host, Priv "
                                                    "FROM mysql.global_priv"):
            privileges = json.loads(privileges)
            if privileges.get("default_role") == "":  # cleared and never set read the same
                del privileges["default_role"]
            accounts[(user, host)] = privileges
        return {
            "accounts": accounts,
            "roles_mapping": set(self.execute("SELECT * FROM mysql.roles_mapping")),
            "db": set(self.execute("SELECT * FROM mysql.db")),
            "tables_priv": {row[:4] + row[6:] for row in self.execute(
                "SELECT * FROM mysql.tables_priv")},  # without Grantor and Timestamp
            "columns_priv": set(self.execute("SELECT * FROM mysql.columns_priv")),
        }

    def error_log(self) -> str:
        log = self.directory / "error.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else "(no error log)"

    # --- setting up -------------------------------------------------------------------------

    def install(self) -> None:
        subprocess.run(
            [self.binaries["install"], *self._options(), "--skip-test-db",
             "--auth-root-authentication-method=normal"],
            check=True, capture_output=True, timeout=120)
        self.start()
        self.execute(f"CREATE USER {account(ADMIN)} IDENTIFIED BY {quote_string(ADMIN_PASSWORD)}")
        self.execute(f"GRANT ALL PRIVILEGES ON *.* TO {account(ADMIN)} WITH GRANT OPTION")

    def _options(self) -> list[str]:
        options = ["--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
                   f"--tmpdir={self.directory}", "--innodb-buffer-pool-size=16M",
                   "--innodb-use-native-aio=0", "--innodb-flush-log-at-trx-commit=0"]
        if os.geteuid() == 0:
            options.append("--user=root")  # mariadbd refuses to run as root unless told so
        return options

    def _connect(self) -> pymysql.Connection:
        # No TLS on the local socket: PyMySQL's default context costs ~80 ms a connection.
        return pymysql.connect(unix_socket=str(self.socket), user="root", charset="utf8mb4",
                               autocommit=True, connect_timeout=5, read_timeout=30,
                               ssl_disabled=True)


def _binaries() -> dict[str, str]:
    server = shutil.which("mariadbd", path=SEARCH_PATH)
    install = shutil.which("mariadb-install-db", path=SEARCH_PATH)
    if not server or not install:
        reason = "needs mariadbd: apt-get install mariadb-server"
        if os.environ.get("BREAKGLASS_REQUIRE_MARIADB"):
            pytest.fail(f"BREAKGLASS_REQUIRE_MARIADB is set but {reason}")
        pytest.skip(reason)
    return {"server": server, "install": install}


@pytest.fixture(scope="session")
def mariadb_server():
    binaries = _binaries()
    # Under /tmp rather than pytest's base directory: a Unix socket path must stay short.
    directory = Path(tempfile.mkdtemp(prefix="breakglass-mariadb-"))
    server = MariaDBServer(directory, binaries)
    try:
        server.install()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)

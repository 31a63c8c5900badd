"""A throwaway PostgreSQL server as a connector's target: its own cluster on a free port
with password authentication, apart from the test database, so a test can stop it and start
it again. Connectors connect as `breakglass_connector` (CREATEROLE, and ADMIN OPTION on the
roles prepared here); the fixture's own checks connect as the superuser."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.ports import free_port

REQUIRE = "BREAKGLASS_REQUIRE_POSTGRES_TARGET"
SUPERUSER_PASSWORD = "target-superuser"
CONNECTOR_PASSWORD = "target-connector"


def _pg_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda path: int(path.parent.parent.name))
    return candidates[-1].parent if candidates else None


def _as_postgres(command: list[str]) -> list[str]:
    """The server refuses to run as root: run it as the postgres account when root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresTarget:
    kind = "postgres_role"

    def __init__(self, pg_bin: Path, root: Path):
        self.pg_bin, self.root = pg_bin, root
        self.data, self.port = root / "data", free_port()
        password_file = root / "password"
        password_file.write_text(SUPERUSER_PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
            shutil.chown(password_file, "postgres")
        subprocess.run(_as_postgres([str(pg_bin / "initdb"), "-D", str(self.data), "-U",
                                     "postgres", "--auth=scram-sha-256",
                                     f"--pwfile={password_file}", "--no-sync"]),
                       check=True, capture_output=True)
        self.start()
        with self.admin() as connection:
            connection.execute(sql.SQL("CREATE ROLE breakglass_connector LOGIN PASSWORD {} "
                                       "CREATEROLE").format(sql.Literal(CONNECTOR_PASSWORD)))

    def url(self, user: str = "breakglass_connector", password: str = CONNECTOR_PASSWORD) -> str:
        return f"postgres://{user}:{password}@127.0.0.1:{self.port}/postgres"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres", SUPERUSER_PASSWORD), autocommit=True)

    # --- the protocol the connector tests use ------------------------------------------------

    def settings(self, target: str) -> dict[str, str]:
        return {"url": self.url(), "role": target}

    def prepare_target(self, target: str) -> None:
        with self.admin() as connection:
            if not self._exists(connection, target):
                connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(
                    sql.Identifier(target)))
            connection.execute(sql.SQL("GRANT {} TO breakglass_connector WITH ADMIN OPTION")
                               .format(sql.Identifier(target)))

    def create_login(self, login: str) -> None:
        with self.admin() as connection:
            if not self._exists(connection, login):
                connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))

    def add_by_hand(self, target: str, login: str) -> None:
        with self.admin() as connection:
            connection.execute(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(target), sql.Identifier(login)))

    def members_by_hand(self, target: str) -> set[str]:
        with self.admin() as connection:
            rows = connection.execute(
                "SELECT m.rolname FROM pg_roles m WHERE pg_has_role(m.oid, "
                "(SELECT oid FROM pg_roles WHERE rolname = %s), 'MEMBER') AND m.rolname <> %s "
                "AND m.rolname NOT IN ('postgres', 'breakglass_connector')",
                [target, target]).fetchall()
        return {name for (name,) in rows}

    def roles(self) -> set[tuple[str, str]]:
        """Every role and every membership: (role, "") and (role, member)."""
        with self.admin() as connection:
            roles = {(name, "") for (name,) in connection.execute(
                "SELECT rolname FROM pg_roles").fetchall()}
            roles |= set(connection.execute(
                "SELECT r.rolname, m.rolname FROM pg_auth_members am JOIN pg_roles r "
                "ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member").fetchall())
        return roles

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.pg_bin / "pg_ctl"), "-D", str(self.data), "-m",
                                     "fast", "-w", "stop"]), check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run(_as_postgres([
            str(self.pg_bin / "pg_ctl"), "start", "-D", str(self.data), "-w", "-l",
            str(self.root / "server.log"), "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"]),
            check=True, capture_output=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.admin().close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"the target PostgreSQL did not start: {self.root / 'server.log'}")

    @staticmethod
    def _exists(connection, role: str) -> bool:
        return connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                  [role]).fetchone() is not None


@contextlib.contextmanager
def throwaway_postgres(name: str):
    """A PostgreSQL server of its own in a temporary folder, removed afterwards; skips (fails
    with BREAKGLASS_REQUIRE_POSTGRES_TARGET) without the server binaries."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        reason = "needs PostgreSQL's server binaries: apt-get install postgresql"
        if os.environ.get(REQUIRE):
            pytest.fail(f"{REQUIRE} is set but the test {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix=f"breakglass-pg-{name}-"))
    server = PostgresTarget(pg_bin, root)
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a test left it stopped
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_target():
    with throwaway_postgres("target") as server:
        yield server

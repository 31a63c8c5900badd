"""MariaDB and MySQL databases: `mariadb-dump` or `mysqldump` for the archive, the `mariadb`
or `mysql` client for a restore.

The password never reaches a command line (which `ps` shows every local user): it travels in
an option file given with `--defaults-file`, so no other option file (the service account's
own `~/.my.cnf`) is read either. Locally that file is a temporary 0600 file in a private
folder, removed after; over SSH it is the child's standard input (`/dev/stdin`), so it never
touches the remote disk. The client always connects over TCP: on a Unix socket the server may
let the operating-system account in (unix_socket authentication), not the website's own."""

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .layout import ArchiveError

MYSQL_SCHEMES = {"mysql", "mariadb"}
MYSQL_PORT = 3306
DUMP_TOOLS = ("mariadb-dump", "mysqldump")
CLIENT_TOOLS = ("mariadb", "mysql")
# A consistent snapshot of InnoDB tables without locking the site, with everything a site's
# schema may hold. --no-tablespaces: MySQL 8 wants the PROCESS privilege for tablespaces, which
# a website's account does not have. --hex-blob keeps binary columns exact in the text dump.
DUMP_OPTIONS = ("--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
                "--no-tablespaces", "--default-character-set=utf8mb4", "--protocol=TCP")
VERSION = re.compile(r"(?:Ver|from)\s+([\w.\-]+)(?:.*Distrib\s+([\w.\-]+))?")


@dataclass(frozen=True)
class MySqlTarget:
    host: str
    port: int
    user: str
    name: str
    password: str = field(repr=False)

    @property
    def shown(self) -> str:
        """The URL without its password, for messages."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.name}"

    def option_file(self) -> str:
        """The [client] group of an option file; values are double-quoted with `\\` and `"`
        escaped, as the MariaDB and MySQL option-file readers unescape them."""
        values = {"user": self.user, "password": self.password, "host": self.host,
                  "port": str(self.port)}
        lines = [f'{key}="{_escaped(value)}"' for key, value in values.items()]
        return "[client]\n" + "\n".join(lines) + "\n"

    def masked(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text


def parse_mysql_url(database_url: str) -> MySqlTarget:
    """mysql://user:password@host[:port]/database (mariadb:// too), every part percent-encoded
    where needed."""
    parts = urlsplit(database_url)
    if parts.scheme not in MYSQL_SCHEMES:
        raise ArchiveError(f"not a MariaDB/MySQL URL (scheme {parts.scheme!r})")
    try:
        port = parts.port or MYSQL_PORT
    except ValueError:
        raise ArchiveError("the database URL has an invalid port") from None
    if parts.query or parts.fragment:
        raise ArchiveError("a MariaDB/MySQL database URL takes no parameters")
    host, user = unquote(parts.hostname or ""), unquote(parts.username or "")
    name, password = unquote(parts.path.removeprefix("/")), unquote(parts.password or "")
    if not host or host.startswith("/"):
        raise ArchiveError("the database URL must name its server's host (reached over TCP)")
    if not user:
        raise ArchiveError("the database URL names no user")
    if not name or "/" in name:
        raise ArchiveError("the database URL names no database")
    for part in (host, user, name, password):
        if any(character in part for character in "\0\n\r"):
            raise ArchiveError("the database URL holds a line break or a NUL character")
    return MySqlTarget(host=host, port=port, user=user, name=name, password=password)


def dump_command(program: str, target: MySqlTarget, *, option_file: str,
                 result_file: str | None = None) -> list[str]:
    """The dump's arguments: `--defaults-file` must come first, or the tool ignores it. The
    database is named after `--`, so a name starting with a dash is a name."""
    command = [program, f"--defaults-file={option_file}", *DUMP_OPTIONS]
    if result_file is not None:
        command.append(f"--result-file={result_file}")
    return [*command, "--", target.name]


def installed_tool(candidates: tuple[str, ...], package: str) -> str:
    for candidate in candidates:
        if executable := shutil.which(candidate):
            return executable
    raise ArchiveError(f"neither {' nor '.join(candidates)} is installed "
                       f"(apt-get install {package})")


def tool_version(executable: str) -> str:
    """`mariadb-dump 10.19 (MariaDB 10.11.19)`: named in every error, as the fix for a failed
    dump often depends on it."""
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True,  # noqa: S603
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArchiveError(f"{executable} cannot be run: {exc}") from None
    return describe_version(os.path.basename(executable), done.stdout)


def describe_version(program: str, output: str) -> str:
    if match := VERSION.search(output):
        version, distribution = match.groups()
        return f"{program} {version}" + (f" ({distribution})" if distribution else "")
    return program


@contextmanager
def local_option_file(target: MySqlTarget) -> Iterator[str]:
    """A 0600 option file in a private 0700 folder, removed whatever happens."""
    folder = tempfile.mkdtemp(prefix="breakglass-mysql-")
    path = os.path.join(folder, "client.cnf")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "w", encoding="utf-8") as file:
            file.write(target.option_file())
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def failure(tool: str, returncode: int, stderr: bytes, target: MySqlTarget) -> ArchiveError:
    """One line of the tool's own error (the last one naming an error), password masked."""
    lines = stderr.decode(errors="replace").strip().splitlines() or ["?"]
    reason = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1])
    return ArchiveError(f"{tool} failed (exit {returncode}): {target.masked(reason.strip())}")


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


# --- Restoring -------------------------------------------------------------------------------

# What a dump would collide with: tables and views, stored routines, events.
OBJECTS_IN_DATABASE = (
    "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE())"
    " + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE())"
    " + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE())")


def client_command(program: str, target: MySqlTarget, *, option_file: str,
                   statement: str | None = None) -> list[str]:
    command = [program, f"--defaults-file={option_file}", "--protocol=TCP", "--batch",
               "--skip-column-names", "--default-character-set=utf8mb4",
               f"--database={target.name}"]
    return [*command, f"--execute={statement}"] if statement is not None else command


def count_objects(target: MySqlTarget) -> int:
    """How many tables, views, routines and events the database holds (0: empty)."""
    output = run_client(target, statement=OBJECTS_IN_DATABASE)
    try:
        return int(output.strip())
    except ValueError:
        raise ArchiveError(f"the database {target.shown} could not be inspected: "
                           f"{output.strip()[:200]!r}") from None


def load_dump(target: MySqlTarget, dump_path: str) -> None:
    """Loads a dump into the database with the client, stopping at its first error."""
    with open(dump_path, "rb") as dump:
        run_client(target, stdin=dump)


def run_client(target: MySqlTarget, *, statement: str | None = None, stdin=None) -> str:
    executable = installed_tool(CLIENT_TOOLS, "mariadb-client")
    with local_option_file(target) as option_file, tempfile.TemporaryFile() as errors:
        done = subprocess.run(  # noqa: S603
            client_command(executable, target, option_file=option_file, statement=statement),
            stdin=stdin if stdin is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=errors, check=False,
            env={name: value for name, value in os.environ.items()
                 if not name.startswith("MYSQL")})
        errors.seek(0)
        stderr = errors.read()
    if done.returncode != 0:
        raise failure(tool_version(executable), done.returncode, stderr, target)
    return done.stdout.decode(errors="replace")

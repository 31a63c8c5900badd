"""Database dumps for the archive: SQLite through its online backup API, PostgreSQL through
`pg_dump --format=custom`, MariaDB and MySQL through `mariadb-dump` or `mysqldump`, each into a
file beside the archive (a tar header needs the dump's size before its data)."""

import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qsl, unquote, urlsplit

from . import mysql
from .layout import CHUNK, PG_DUMP_MEMBER, SQLITE_MEMBER, ArchiveError

POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}
# libpq settings a database URL may carry as query parameters, passed on as environment.
LIBPQ_PARAMETERS = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
                    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "host": "PGHOST",
                    "port": "PGPORT", "connect_timeout": "PGCONNECT_TIMEOUT",
                    "application_name": "PGAPPNAME"}
# Where libpq finds the service user's own credentials (~/.pgpass, ~/.pg_service.conf,
# ~/.postgresql/*, a Kerberos ticket cache): the child gets a path that cannot exist instead
# (/dev/null is no folder), so a website URL without a password never authenticates as
# Breakglass.
NO_FILE = os.path.join(os.devnull, "none")
OWN_CREDENTIALS = ("HOME", "PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGSSLCERT",
                   "PGSSLKEY", "PGSSLROOTCERT", "PGSSLCRL", "PGSSLCRLDIR", "KRB5CCNAME")
KEEPALIVE_SECONDS = 1.0
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
Keepalive = Callable[[], None]
Confirm = Callable[[int], None]  # checks a descriptor the SQLite copy opened


def database_estimate(database_url: str | None) -> int:
    if database_url is None or urlsplit(database_url).scheme != "sqlite":
        return 0  # a pg_dump's size is known once it is written
    with suppress(ArchiveError, OSError):
        return sqlite_path(database_url).stat().st_size
    return 0


def check_database_url(database_url: str) -> None:
    """Refuses a database URL that cannot be dumped before any file is archived."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        if not (path := sqlite_path(database_url)).is_file():
            raise ArchiveError(f"the SQLite database {path} does not exist")
    elif scheme in POSTGRES_SCHEMES:
        libpq_environment(database_url)
    elif scheme in mysql.MYSQL_SCHEMES:
        mysql.parse_mysql_url(database_url)
    else:
        raise ArchiveError(f"unsupported database URL scheme {scheme!r}")


def dump_database(database_url: str, dump: Path, *, keepalive: Keepalive | None = None,
                  confirm: Confirm | None = None) -> tuple[str, str]:
    """Writes a dump of an SQLite or PostgreSQL `database_url` into the existing file `dump`;
    returns the engine and the dump's member name in the archive (MariaDB/MySQL dumps are
    streamed: stream_mysql_dump). `keepalive` is called every second meanwhile: a
    dump of a large database takes hours, and the job's heartbeat must go on. `confirm` is
    given each file the SQLite copy opened, before anything is read: whatever the path
    became since it was checked, it may refuse the file actually opened."""
    keepalive = keepalive or (lambda: None)
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        _snapshot_sqlite(sqlite_path(database_url), dump, keepalive, confirm)
        return "sqlite", SQLITE_MEMBER
    if scheme in POSTGRES_SCHEMES:
        _pg_dump(database_url, dump, keepalive)
        return "postgresql", PG_DUMP_MEMBER
    raise ArchiveError(f"unsupported database URL scheme {scheme!r}")


def sqlite_path(database_url: str) -> Path:
    # django-environ's convention: sqlite:////absolute/path, sqlite:///relative/path
    path = unquote(urlsplit(database_url).path)[1:]
    if not path or path == ":memory:":
        raise ArchiveError("the SQLite database URL names no file")
    return Path(path).resolve()


def _snapshot_sqlite(source: Path, target: Path, keepalive: Keepalive,
                     confirm: Confirm | None) -> None:
    """A consistent copy through SQLite's online backup API, taken in one step: a stepwise
    backup restarts whenever the site writes, and might never finish on a busy site. In WAL
    mode the site keeps writing meanwhile; otherwise its writers wait for the copy. The copy
    runs in a thread of its own while this one keeps the job alive."""
    read_only = f"{source.as_uri()}?mode=ro"  # never creates an empty database by mistake
    failures: list[Exception] = []

    def copy_database() -> None:
        try:
            known = _open_files()
            with closing(sqlite3.connect(read_only, uri=True, timeout=60)) as site:
                site.execute("PRAGMA schema_version").fetchone()  # opens the file itself
                for fd, _ in sorted(_open_files() - known) if confirm else ():
                    confirm(fd)
                with closing(sqlite3.connect(target)) as copy:
                    site.backup(copy)
        except (sqlite3.Error, ArchiveError) as exc:
            failures.append(exc)

    copier = threading.Thread(target=copy_database, name="backup-sqlite", daemon=True)
    copier.start()
    copier.join(KEEPALIVE_SECONDS)
    while copier.is_alive():
        keepalive()
        copier.join(KEEPALIVE_SECONDS)
    if failures and isinstance(failures[0], ArchiveError):
        raise failures[0]
    if failures:
        raise ArchiveError(f"the SQLite backup failed: {failures[0]}")


def _open_files() -> set[tuple[int, str]]:
    """This process's descriptors and what each names (the pair, as numbers are reused)."""
    try:
        numbers = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: the path check made before the dump stands alone
        return set()
    named = set()
    for number in numbers:
        with suppress(OSError):  # the listing's own descriptor, closed since
            named.add((number, os.readlink(f"/proc/self/fd/{number}")))
    return named


def _pg_dump(database_url: str, target: Path, keepalive: Keepalive) -> None:
    environment, password = libpq_environment(database_url)
    executable = shutil.which("pg_dump")
    if executable is None:
        raise ArchiveError("pg_dump is not installed (apt-get install postgresql-client)")
    # Connection settings, the password above all, travel in the child's environment: never on
    # a command line that `ps` shows to every local user.
    returncode, stderr = run_with_keepalive(
        [executable, "--format=custom", "--no-password", f"--file={target}"], environment,
        keepalive)
    if returncode != 0:
        reason = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        if password:
            reason = [reason[0].replace(password, "***")]
        raise ArchiveError(f"pg_dump failed (exit {returncode}): {reason[0]}")


class CompressedDump:
    """A dump compressed into one complete gzip member as it arrives from the dump tool, hashed
    and counted on the way: the archive then splices that member in whole, so dumping and
    compressing overlap instead of following each other. Level 1 keeps pace with the dump
    tool (bench/mysql_dump.py: level 6 ran at a quarter of its speed, level 3 at 0.7); a SQL
    dump then takes about 22% of its size instead of 15%."""

    LEVEL = 1

    def __init__(self, file: BinaryIO, progress: Callable[[int], None] = lambda count: None):
        self.file, self.progress = file, progress
        self.compressor = zlib.compressobj(self.LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
        self.digest, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)
        self.file.write(self.compressor.compress(chunk))
        self.progress(len(chunk))

    def finish(self) -> None:
        self.file.write(self.compressor.flush())
        self.file.flush()


def stream_mysql_dump(database_url: str, sink: CompressedDump, keepalive: Keepalive) -> None:
    """Runs mariadb-dump (or mysqldump) here and feeds its output into `sink`."""
    server = mysql.parse_mysql_url(database_url)
    executable = mysql.installed_tool(mysql.DUMP_TOOLS, "mariadb-client")
    tool = mysql.tool_version(executable)
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("MYSQL")}
    with mysql.local_option_file(server) as option_file, \
            tempfile.TemporaryFile() as errors:  # a file, not a pipe: it never fills up
        process = subprocess.Popen(  # noqa: S603
            mysql.dump_command(executable, server, option_file=option_file),
            env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        with suppress(OSError):  # Linux: a 1 MiB pipe wakes this reader 16 times less often
            fcntl.fcntl(process.stdout.fileno(), F_SETPIPE_SZ, CHUNK)
        try:
            while chunk := process.stdout.read1(CHUNK):
                sink.write(chunk)
                keepalive()
            process.wait()
        finally:
            process.stdout.close()
            if process.poll() is None:  # this worker was stopped: so is its dump
                process.kill()
                process.wait()
        errors.seek(0)
        stderr = errors.read()
    if process.returncode != 0:
        raise mysql.failure(tool, process.returncode, stderr, server)


def run_with_keepalive(command: list[str], environment: dict[str, str],
                       keepalive: Keepalive) -> tuple[int, bytes]:
    """Runs a dump tool to its end, calling `keepalive` every second; a stopped worker stops
    its child too. Returns the exit status and what the tool wrote to stderr."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: it never fills up
        process = subprocess.Popen(  # noqa: S603
            command, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=errors)
        try:
            while _still_running(process):
                keepalive()
        finally:
            if process.poll() is None:  # this worker was stopped: so is its child
                process.kill()
                process.wait()
        errors.seek(0)
        return process.returncode, errors.read()


def _still_running(process: subprocess.Popen) -> bool:
    try:
        process.wait(timeout=KEEPALIVE_SECONDS)
    except subprocess.TimeoutExpired:
        return True
    return False


def libpq_environment(database_url: str) -> tuple[dict[str, str], str]:
    parts = urlsplit(database_url)
    try:
        port = parts.port
    except ValueError:
        raise ArchiveError("the database URL has an invalid port") from None
    settings = {"PGHOST": unquote(parts.hostname or ""), "PGPORT": str(port or ""),
                "PGUSER": unquote(parts.username or ""),
                "PGPASSWORD": unquote(parts.password or ""),
                "PGDATABASE": unquote(parts.path.lstrip("/"))}
    for key, value in parse_qsl(parts.query):
        if key not in LIBPQ_PARAMETERS:
            raise ArchiveError(f"unsupported database URL parameter {key!r}")
        settings[LIBPQ_PARAMETERS[key]] = value
    if not settings["PGDATABASE"]:
        raise ArchiveError("the database URL names no database")
    # Inherited PG* variables (a PGSERVICE, another password) must not change the target.
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    environment.update(dict.fromkeys(OWN_CREDENTIALS, NO_FILE))
    environment.update({name: value for name, value in settings.items() if value})
    return environment, settings["PGPASSWORD"]

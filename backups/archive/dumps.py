"""Database dumps for the archive: SQLite through its online backup API, PostgreSQL through
`pg_dump --format=custom`, each into a file beside the archive."""

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing, suppress
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from .layout import PG_DUMP_MEMBER, SQLITE_MEMBER, ArchiveError

POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}
# libpq settings a database URL may carry as query parameters, passed on as environment.
LIBPQ_PARAMETERS = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
                    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "host": "PGHOST",
                    "port": "PGPORT", "connect_timeout": "PGCONNECT_TIMEOUT",
                    "application_name": "PGAPPNAME"}


def database_estimate(database_url: str | None) -> int:
    if database_url is None or urlsplit(database_url).scheme != "sqlite":
        return 0  # a pg_dump's size is known once it is written
    with suppress(ArchiveError, OSError):
        return _sqlite_path(database_url).stat().st_size
    return 0


def check_database_url(database_url: str) -> None:
    """Refuses a database URL that cannot be dumped before any file is archived."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        if not (path := _sqlite_path(database_url)).is_file():
            raise ArchiveError(f"the SQLite database {path} does not exist")
    elif scheme in POSTGRES_SCHEMES:
        _libpq_environment(database_url)
    else:
        raise ArchiveError(f"unsupported database URL scheme {scheme!r}")


def dump_database(database_url: str, dump: Path) -> tuple[str, str]:
    """Writes a dump of `database_url` into the existing file `dump`; returns the engine and
    the dump's member name in the archive."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        _snapshot_sqlite(_sqlite_path(database_url), dump)
        return "sqlite", SQLITE_MEMBER
    if scheme in POSTGRES_SCHEMES:
        _pg_dump(database_url, dump)
        return "postgresql", PG_DUMP_MEMBER
    raise ArchiveError(f"unsupported database URL scheme {scheme!r}")


def _sqlite_path(database_url: str) -> Path:
    # django-environ's convention: sqlite:////absolute/path, sqlite:///relative/path
    path = unquote(urlsplit(database_url).path)[1:]
    if not path or path == ":memory:":
        raise ArchiveError("the SQLite database URL names no file")
    return Path(path).resolve()


def _snapshot_sqlite(source: Path, target: Path) -> None:
    """A consistent copy through SQLite's online backup API, taken in one step: a stepwise
    backup restarts whenever the site writes, and might never finish on a busy site. In WAL
    mode the site keeps writing meanwhile; otherwise its writers wait for the copy."""
    read_only = f"{source.as_uri()}?mode=ro"  # never creates an empty database by mistake
    try:
        with (closing(sqlite3.connect(read_only, uri=True, timeout=60)) as site,
              closing(sqlite3.connect(target)) as copy):
            site.backup(copy)
    except sqlite3.Error as exc:
        raise ArchiveError(f"the SQLite backup failed: {exc}") from None


def _pg_dump(database_url: str, target: Path) -> None:
    environment, password = _libpq_environment(database_url)
    executable = shutil.which("pg_dump")
    if executable is None:
        raise ArchiveError("pg_dump is not installed (apt-get install postgresql-client)")
    # Connection settings, the password above all, travel in the child's environment: never on
    # a command line that `ps` shows to every local user.
    result = subprocess.run(  # noqa: S603
        [executable, "--format=custom", "--no-password", f"--file={target}"],
        env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        if password:
            reason = [reason[0].replace(password, "***")]
        raise ArchiveError(f"pg_dump failed (exit {result.returncode}): {reason[0]}")


def _libpq_environment(database_url: str) -> tuple[dict[str, str], str]:
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
    environment.update({name: value for name, value in settings.items() if value})
    return environment, settings["PGPASSWORD"]

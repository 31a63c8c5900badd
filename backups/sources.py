"""What the emergency backup may read (QUALITY Q40).

Only folders under BACKUP_SOURCE_ROOTS, and only databases that BACKUP_DATABASE_ALLOW names
(SQLite files under one of its paths, PostgreSQL servers by host[:port]), both set in the
environment by the operator, never in the admin. Never Breakglass's own files whatever the
roots say: its source tree (code and `.env`), VAR_DIR, BACKUP_ROOT, CHECKPOINT_DIR, its
databases, and every absolute path named in its settings.

The same checks run when a website is saved (a form error) and when its backup job runs, on
the resolved real path, so a symlink repointed after saving is caught; the archive writer then
checks the folder it actually opened through its descriptor, and skips hard links to
Breakglass's own files.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connections

from backups.archive import ArchiveError
from backups.archive.dumps import POSTGRES_SCHEMES, libpq_environment
from backups.archive.mysql import MYSQL_SCHEMES, parse_mysql_url
from backups.archive.remote import SshSource, parse_ssh_source

POSTGRES_PORT = 5432
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
# Settings that name what the backup may read, not Breakglass's own files.
SOURCE_SETTINGS = {"BACKUP_SOURCE_ROOTS", "BACKUP_DATABASE_ALLOW", "BACKUP_REMOTE_SOURCES",
                   "DEMO_SITES_DIR", "DEVELOPMENT_BACKUP_SOURCES"}


class SourceRefused(ArchiveError):
    """A files directory or database the emergency backup may not read."""


@dataclass(frozen=True)
class SourcePolicy:
    roots: tuple[str, ...]  # real paths
    database_paths: tuple[str, ...]  # real paths
    database_hosts: tuple[tuple[str, int | None], ...]  # (host, port or any port)
    forbidden: tuple[str, ...]  # Breakglass's own files and folders, real paths
    forbidden_inodes: frozenset[tuple[int, int]]
    own_databases: tuple[tuple[str, int, str], ...]  # (host, port, name) of network ones
    remote_roots: tuple[tuple[str, int, str], ...] = ()  # (host, port, folder) over SSH

    def check_ssh_source(self, url: str) -> SshSource:
        """The parsed source if its server and folder are allowed (BACKUP_REMOTE_SOURCES);
        checked again on the folder's real path on the server once connected."""
        try:
            source = parse_ssh_source(url)
        except ArchiveError as exc:
            raise SourceRefused(str(exc)) from None
        self.check_remote_folder(source, source.path)
        return source

    def check_remote_folder(self, source: SshSource, real: str) -> None:
        if not self.remote_roots:
            raise SourceRefused("No server is allowed: the operator lists ssh://host[:port]/"
                                "folder entries in BACKUP_REMOTE_SOURCES in the environment.")
        if not any(_same_host(source.host, host) and source.port == port
                   and _within(real, root) for host, port, root in self.remote_roots):
            raise SourceRefused(f"{real} on {source.address} is outside the allowed folders "
                                "(BACKUP_REMOTE_SOURCES)")
        if _same_host(source.host, "localhost"):  # this machine: its own files stay out
            self._check_real_folder(real, real, roots=False)

    def check_remote_database_url(self, source: SshSource, database_url: str) -> None:
        """A database dumped on the website's server: MariaDB/MySQL only, on that server's
        own loopback or on a server BACKUP_DATABASE_ALLOW names."""
        if urlsplit(database_url).scheme not in MYSQL_SCHEMES:
            raise SourceRefused("over SSH only a MariaDB/MySQL database can be backed up")
        try:
            server = parse_mysql_url(database_url)
        except ArchiveError as exc:
            raise SourceRefused(str(exc)) from None
        if _same_host(source.host, "localhost") or not _same_host(server.host, "localhost"):
            self._check_server(server.host, server.port, server.name)

    def check_files_dir(self, files_dir: str) -> Path:
        """The real path of `files_dir` if the backup may read it; SourceRefused otherwise."""
        if not self.roots:
            raise SourceRefused("No files directory is allowed: the operator sets "
                                "BACKUP_SOURCE_ROOTS in the environment (comma-separated "
                                "absolute folders).")
        _refuse_unclean(files_dir)
        real = os.path.realpath(files_dir)
        self._check_real_folder(real, files_dir)
        return Path(real)

    def check_open_folder(self, fd: int, path: Path) -> None:
        """Called by the archive writer on the top folder it opened from `path`: the folder
        the descriptor names now must still pass, whatever happened to the path since."""
        opened = os.fstat(fd)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc (not Linux): the path must still name the opened folder
            real = os.path.realpath(path)
            if not os.path.samestat(opened, os.stat(real)):
                raise SourceRefused(f"{path} changed while it was being opened") from None
        if not os.path.isabs(real):
            raise SourceRefused(f"the opened folder is gone or not a folder ({real})")
        self._check_real_folder(real, real)
        if self.is_forbidden(opened):
            raise SourceRefused(f"{real} is one of Breakglass's own files")

    def check_open_database(self, fd: int) -> None:
        """Called on each file the SQLite copy opened, before it reads: an allowed database,
        whatever its path became (a symlink swapped in) since it was checked."""
        try:
            real, status = os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd)
        except OSError:
            return  # closed already (another thread's passing descriptor)
        if not os.path.isabs(real):
            return  # a socket or a pipe, not a file
        if (self.is_forbidden(status) or any(_within(real, own) for own in self.forbidden)
                or not any(_within(real, allowed) for allowed in self.database_paths)):
            raise SourceRefused(f"the SQLite copy opened {real}, which is not an allowed "
                                "database (BACKUP_DATABASE_ALLOW)")

    def is_forbidden(self, status: os.stat_result) -> bool:
        """A file or folder that is one of Breakglass's own (a hard link included)."""
        return (status.st_dev, status.st_ino) in self.forbidden_inodes

    def check_database_url(self, database_url: str) -> None:
        try:
            scheme = urlsplit(database_url).scheme
        except ValueError:
            raise SourceRefused("the database URL is not a valid URL") from None
        if scheme == "sqlite":
            self._check_sqlite(database_url)
        elif scheme in POSTGRES_SCHEMES:
            self._check_postgres(database_url)
        elif scheme in MYSQL_SCHEMES:
            self._check_mysql(database_url)
        else:
            raise SourceRefused(f"unsupported database URL scheme {scheme!r}: sqlite, "
                                "postgres or mysql")

    def _check_real_folder(self, real: str, named: str, *, roots: bool = True) -> None:
        if roots and not any(_within(real, root) for root in self.roots):
            raise SourceRefused(f"{named} is outside the allowed folders "
                                f"(BACKUP_SOURCE_ROOTS: {', '.join(self.roots)})")
        if any(_within(real, own) or _within(own, real) for own in self.forbidden):
            raise SourceRefused(f"{named} holds or lies inside Breakglass's own files "
                                "(its code, settings, database or archives)")

    def _check_sqlite(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        path = unquote(parts.path)[1:]
        if not self.database_paths:
            raise SourceRefused("No SQLite database is allowed: the operator lists its folders "
                                "in BACKUP_DATABASE_ALLOW in the environment.")
        if parts.netloc or not path:
            raise SourceRefused("an SQLite URL is sqlite:////absolute/path/to/file")
        _refuse_unclean(path)
        real = os.path.realpath(path)
        if not any(_within(real, allowed) for allowed in self.database_paths):
            raise SourceRefused(f"the SQLite database {path} is outside the allowed folders "
                                f"(BACKUP_DATABASE_ALLOW: {', '.join(self.database_paths)})")
        forbidden = any(_within(real, own) or _within(own, real) for own in self.forbidden)
        if forbidden or (os.path.exists(real) and self.is_forbidden(os.stat(real))):
            raise SourceRefused(f"the SQLite database {path} is one of Breakglass's own files")

    def _check_mysql(self, database_url: str) -> None:
        try:
            server = parse_mysql_url(database_url)
        except ArchiveError as exc:
            raise SourceRefused(str(exc)) from None
        self._check_server(server.host, server.port, server.name)

    def _check_server(self, host: str, port: int, name: str) -> None:
        if not any(_same_host(host, allowed) and allowed_port in (None, port)
                   for allowed, allowed_port in self.database_hosts):
            raise SourceRefused(f"the database server {host}:{port} is not allowed "
                                "(BACKUP_DATABASE_ALLOW lists host[:port] entries)")
        if any(_same_host(host, own_host) and port == own_port and name == own_name
               for own_host, own_port, own_name in self.own_databases):
            raise SourceRefused("that database is Breakglass's own database")

    def _check_postgres(self, database_url: str) -> None:
        try:
            environment, _ = libpq_environment(database_url)
        except ArchiveError as exc:
            raise SourceRefused(str(exc)) from None
        name = environment["PGDATABASE"]
        for host, port in _effective_servers(environment):
            if host.startswith(("/", "@")):
                # Over a socket the server may trust the OS user pg_dump runs as (peer
                # authentication): Breakglass's own account, not the website's credentials.
                raise SourceRefused(f"the database URL connects through a Unix socket ({host}): "
                                    "name the server's host and port, reached over TCP")
            self._check_server(host, port, name)


def current_policy() -> SourcePolicy:
    """The policy from the settings as they are now (read at every check)."""
    forbidden = sorted(set(_forbidden_paths()))
    paths, hosts = _parse_database_allow(settings.BACKUP_DATABASE_ALLOW)
    return SourcePolicy(
        roots=tuple(os.path.realpath(root) for root in settings.BACKUP_SOURCE_ROOTS if root),
        database_paths=paths, database_hosts=hosts, forbidden=tuple(forbidden),
        forbidden_inodes=frozenset(_inodes(forbidden)), own_databases=tuple(_own_databases()),
        remote_roots=tuple(_parse_remote_sources(settings.BACKUP_REMOTE_SOURCES)))


def _refuse_unclean(path: str) -> None:
    if "\0" in path or not os.path.isabs(path):
        raise SourceRefused(f"{path!r} is not an absolute path")
    if ".." in PurePosixPath(path).parts:
        raise SourceRefused(f"{path} contains '..': name the folder itself")


def _within(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies under it, component by component (so /srv/sites2 is
    not under /srv/sites)."""
    return os.path.commonpath([path, folder]) == folder


def _effective_servers(environment: dict[str, str]) -> list[tuple[str, int]]:
    """The servers libpq will connect to: PGHOST and PGPORT (the URL's, or its `host` and
    `port` parameters, which win) may each list several, comma-separated."""
    hosts = environment.get("PGHOST", "").split(",")
    ports = environment.get("PGPORT", "").split(",")
    if not all(hosts) or not hosts:
        raise SourceRefused("the database URL must name its server's host")
    if len(ports) == 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        raise SourceRefused("the database URL lists a different number of hosts and ports")
    try:
        return [(host, int(port) if port else POSTGRES_PORT) for host, port in zip(hosts, ports,
                                                                                    strict=True)]
    except ValueError:
        raise SourceRefused("the database URL has an invalid port") from None


def _same_host(one: str, other: str) -> bool:
    def key(host: str) -> str:
        host = host.strip("[]").lower()
        return "local" if host in LOCAL_HOSTS or host.startswith("/") else host

    return key(one) == key(other)


def _parse_database_allow(entries: list[str]) -> tuple[tuple[str, ...], tuple]:
    """`/srv/sites` (SQLite files under it), `db.internal:5432`, `db.internal` (any port),
    `[2001:db8::1]:5432`."""
    paths, hosts = [], []
    for entry in (entry.strip() for entry in entries):
        if entry.startswith("/"):
            paths.append(os.path.realpath(entry))
        elif entry:
            parts = urlsplit(f"//{entry}")
            hosts.append((parts.hostname or "", parts.port))
    return tuple(paths), tuple(hosts)


def _parse_remote_sources(entries: list[str]) -> Iterator[tuple[str, int, str]]:
    for entry in (entry.strip() for entry in entries if entry.strip()):
        parts = urlsplit(entry)
        yield parts.hostname or "", parts.port or 22, unquote(parts.path).rstrip("/") or "/"


def _forbidden_paths() -> Iterator[str]:
    for folder in (settings.BASE_DIR, settings.VAR_DIR, settings.BACKUP_ROOT,
                   settings.CHECKPOINT_DIR):
        yield os.path.realpath(folder)
    for name in _sqlite_databases():
        for companion in SQLITE_COMPANIONS:
            yield os.path.realpath(name + companion)
    for value in _setting_values():
        if _looks_like_a_path(value):
            yield os.path.realpath(value)


def _sqlite_databases() -> Iterator[str]:
    configured = [*settings.DATABASES.values(),
                  *(connection.settings_dict for connection in connections.all(
                      initialized_only=True))]
    for database in configured:
        if "sqlite" in database.get("ENGINE", ""):
            for name in (database.get("NAME"), (database.get("TEST") or {}).get("NAME")):
                if name and os.path.isabs(str(name)):
                    yield str(name)


def _own_databases() -> Iterator[tuple[str, int, str]]:
    configured = [*settings.DATABASES.values(),
                  *(connection.settings_dict for connection in connections.all(
                      initialized_only=True))]
    for database in configured:
        if "sqlite" not in database.get("ENGINE", ""):
            port = int(database.get("PORT") or POSTGRES_PORT)
            for name in (database.get("NAME"), (database.get("TEST") or {}).get("NAME")):
                if name:
                    yield str(database.get("HOST") or ""), port, str(name)


def _setting_values() -> Iterator[object]:
    """Every leaf value of every setting, through dicts, lists, tuples and sets."""
    pending = [getattr(settings, name) for name in dir(settings)
               if name.isupper() and name not in SOURCE_SETTINGS]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            pending.extend(value)
        else:
            yield value


def _looks_like_a_path(value: object) -> bool:
    """An absolute path that exists, but not `/` itself (cookie paths are `/`)."""
    if not isinstance(value, str | Path):
        return False
    text = str(value)
    return (text.startswith("/") and text != "/" and "\0" not in text and len(text) < 4096
            and os.path.lexists(text))


def _inodes(paths: list[str]) -> Iterator[tuple[int, int]]:
    """The identities of Breakglass's own files and folders, and of the files in its data
    folders, so that a hard link to one of them is recognised under another name."""
    data_folders = {os.path.realpath(settings.VAR_DIR), os.path.realpath(settings.BACKUP_ROOT),
                    os.path.realpath(settings.CHECKPOINT_DIR)}
    for path in [*paths, os.path.join(os.path.realpath(settings.BASE_DIR), ".env")]:
        try:
            status = os.stat(path)
        except OSError:
            continue
        yield status.st_dev, status.st_ino
    for folder in data_folders:
        for top, _, files in os.walk(folder):
            for name in files:
                try:
                    status = os.lstat(os.path.join(top, name))
                except OSError:
                    continue
                yield status.st_dev, status.st_ino

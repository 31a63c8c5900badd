"""Restoring an archive (SPEC §2.6): verified first, then its files written into a folder and its
database loaded into a server. Nothing is touched until the archive, the folder and the database
have all been checked; after that, every file is written under a temporary name, checked against
the manifest and only then renamed, so a file under its final name is always complete.

Each refusal carries the exit code of `manage.py restore_backup`: 2 the archive is not valid or
not safe, 3 the target folder or database is not empty or not usable, 4 the database cannot be
restored (tool missing, engine unknown, restore failed)."""

import gzip
import hashlib
import os
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zlib
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

from . import mysql
from .dumps import POSTGRES_SCHEMES, libpq_environment, sqlite_path
from .layout import (
    CHUNK,
    FILES_PREFIX,
    MANIFEST_NAME,
    MYSQL_DUMP_MEMBER,
    PG_DUMP_MEMBER,
    SQLITE_MEMBER,
    ArchiveError,
)
from .verifying import HashingReader, VerifyReport, verify_archive

RESTORABLE = {"sqlite": SQLITE_MEMBER, "postgresql": PG_DUMP_MEMBER, "mysql": MYSQL_DUMP_MEMBER}
LOADED_WITH = {"sqlite": "copy it into place",
               "postgresql": "load it with pg_restore --no-owner --no-privileges",
               "mysql": "load it with the mariadb client"}
TEMPORARY_PREFIX = ".restoring-"
FILE_MODES = 0o755  # keeps the owner's bits and read/execute for others: no setuid, no group write
FOLDER_MODE = 0o755
# SQLite would replay a journal left by the database it replaces into the restored one.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
CUSTOM_DUMP_MAGIC = b"PGDMP"  # pg_dump --format=custom; anything else is plain SQL, for psql
USER_RELATIONS = ("SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                  "ON n.oid = c.relnamespace WHERE n.nspname <> 'information_schema' "
                  "AND n.nspname NOT LIKE 'pg\\_%'")
READ_ERRORS = (OSError, EOFError, tarfile.TarError, zlib.error)


class RestoreError(Exception):
    """The restore was refused or stopped. `report` says what had been restored by then; it is
    None when nothing was touched."""

    exit_code = 1

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []
        self.report: RestoreReport | None = None


class ArchiveRefused(RestoreError):
    exit_code = 2


class TargetRefused(RestoreError):
    exit_code = 3


class DatabaseNotRestored(RestoreError):
    exit_code = 4


@dataclass
class RestoreReport:
    sha256: str  # of the whole archive file, as verified
    website: str
    created_at: str
    files_to: Path
    files_planned: int
    files: int = 0
    bytes: int = 0
    database: str = "none in the archive"  # what became of the archive's database

    def summary(self) -> list[str]:
        return [f"Archive SHA-256: {self.sha256}",
                f"Website {self.website}, made {self.created_at}",
                f"Files: {self.files} of {self.files_planned} restored ({self.bytes} bytes) "
                f"into {self.files_to}",
                f"Database: {self.database}"]


def restore_archive(archive: Path, *, files_to: Path, database_url: str | None = None,
                    force: bool = False) -> RestoreReport:
    """Verifies `archive`, then writes its files into `files_to` and, given a `database_url`,
    its database there. Refuses (before writing anything) an archive that does not verify or
    holds an unsafe name, a `files_to` that is a symlink or not empty, a database that exists
    or is not empty, and a missing tool; `force` writes over existing files (others in the
    folder are kept) and over the database. Raises a RestoreError subclass."""
    source = _open_archive(archive)
    with source:
        verified = _verify(archive, source)
        files = _planned_files(verified.manifest)
        _check_folder(files_to, files, force)
        entry = verified.manifest.get("database")
        database = _database_target(entry, database_url, force)
        report = RestoreReport(verified.sha256, str(verified.manifest.get("website")),
                               str(verified.manifest.get("created_at")), files_to, len(files),
                               database=_database_plan(entry, database_url))
        try:
            _Extraction(files, entry, database, report).run(source, verified.sha256)
            if database is not None:
                database.restore()
                report.database = f"{database.engine} restored into {database.shown}"
        except RestoreError as error:
            error.report = report
            if isinstance(error, DatabaseNotRestored) and database is not None:
                report.database = f"{database.engine} NOT restored: {error}"
            raise
        finally:
            if database is not None:
                database.discard()
    return report


# --- Before anything is written --------------------------------------------------------------


def _open_archive(archive: Path) -> BinaryIO:
    try:
        return open(archive, "rb")
    except OSError as exc:
        raise ArchiveRefused("the archive cannot be read",
                             [f"cannot read the archive: {exc.strerror or exc}"]) from None


def _verify(archive: Path, source: BinaryIO) -> VerifyReport:
    """The extraction reads `source`, opened before the verification: the file checked must be
    the file read, unchanged."""
    before = _identity(os.fstat(source.fileno()))
    verified = verify_archive(archive)
    if not verified.ok:
        raise ArchiveRefused(f"the archive is not valid: {len(verified.problems)} problem(s); "
                             "nothing was written", verified.problems)
    try:
        named = _identity(os.stat(archive))
    except OSError:
        named = ()
    if _identity(os.fstat(source.fileno())) != before or named[:2] != before[:2]:
        raise ArchiveRefused("the archive changed while it was verified; nothing was written")
    return verified


def _identity(status: os.stat_result) -> tuple[int, ...]:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _planned_files(manifest: dict) -> dict[str, tuple[int, str]]:
    """The files to write (member name: size and SHA-256), from a verified manifest, whose
    entries match the archive's members one for one."""
    files, folders, problems = {}, set(), []
    for entry in manifest["files"]:
        name = entry["path"]
        parts = name.removeprefix(FILES_PREFIX).split("/")
        if not name.startswith(FILES_PREFIX) or "\0" in name or any(
                part in {"", ".", ".."} for part in parts):
            problems.append(f"unsafe member name: {name}")
            continue
        files[name] = (entry["size"], entry["sha256"])
        folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
    for clash in sorted(folders & {name.removeprefix(FILES_PREFIX) for name in files}):
        problems.append(f"both a file and a folder: {FILES_PREFIX}{clash}")
    if problems:
        raise ArchiveRefused(f"the archive is not safe to restore: {len(problems)} problem(s); "
                             "nothing was written", problems)
    return files


def _check_folder(top: Path, files: dict, force: bool) -> None:
    try:
        status = top.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        raise TargetRefused(f"{top} is a symlink: name the real folder")
    if not stat.S_ISDIR(status.st_mode):
        raise TargetRefused(f"{top} is not a folder")
    if not force:
        with os.scandir(top) as listing:
            if next(listing, None) is not None:
                raise TargetRefused(f"{top} is not empty (--force writes over the files in it)")
        return
    _check_nothing_in_the_way(top, files)


def _check_nothing_in_the_way(top: Path, files: dict) -> None:
    """With --force: refuses, before writing, a symlink or file where the archive has a folder
    (it would be written through) and a folder where it has a file. The writing refuses them
    again, through descriptors, should they appear meanwhile."""
    checked: set[str] = set()
    for name in files:
        parts = name.removeprefix(FILES_PREFIX).split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path in checked:
                continue
            checked.add(path)
            try:
                is_folder = stat.S_ISDIR(os.lstat(top / path).st_mode)
            except FileNotFoundError:
                break
            if is_folder == (depth == len(parts)):
                kind = "a folder" if is_folder else "a symlink or a file"
                raise TargetRefused(f"{top / path} is {kind}, where the archive has "
                                    f"{'a file' if is_folder else 'a folder'}: remove it first")


def _database_plan(entry: dict | None, database_url: str | None) -> str:
    if entry is None:
        return "none in the archive" + (" (--database-url not used)" if database_url else "")
    engine, path = entry.get("engine"), entry.get("path")
    if database_url is not None:
        return f"{engine} NOT restored: the restore stopped before it"
    how = LOADED_WITH.get(engine, "load it with that database's own tools")
    return (f"{engine} NOT restored (no --database-url): run again with --database-url and "
            f"--force, or extract {path} from the archive and {how}")


def _database_target(entry: dict | None, database_url: str | None, force: bool):
    if entry is None or database_url is None:
        return None
    engine, scheme = entry.get("engine"), urlsplit(database_url).scheme
    if RESTORABLE.get(engine) != entry.get("path"):
        raise DatabaseNotRestored(
            f"the archive's database ({engine}) cannot be restored by this command, which "
            "restores SQLite, PostgreSQL and MariaDB/MySQL: extract "
            f"{entry.get('path')} from the archive and load it with that database's own tools")
    try:
        if engine == "sqlite" and scheme == "sqlite":
            return _SqliteTarget(sqlite_path(database_url), force)
        if engine == "postgresql" and scheme in POSTGRES_SCHEMES:
            return _PostgresTarget(database_url, force)
        if engine == "mysql" and scheme in mysql.MYSQL_SCHEMES:
            return _MysqlTarget(database_url, force)
    except ArchiveError as exc:
        raise DatabaseNotRestored(str(exc)) from None
    raise DatabaseNotRestored(f"the archive holds a {engine} database, which a {scheme}:// "
                              "--database-url cannot receive")


# --- Writing ---------------------------------------------------------------------------------


class _Extraction:
    """One streaming pass over the archive that writes the planned files and the database dump,
    each checked against the manifest as it is written."""

    def __init__(self, files: dict, entry: dict | None, database, report: RestoreReport):
        self.files, self.entry, self.database, self.report = files, entry, database, report
        self.seen: set[str] = set()

    def run(self, source: BinaryIO, sha256: str) -> None:
        self.folders = _Folders(self.report.files_to)
        source.seek(0)
        hashed = HashingReader(source)
        try:
            with gzip.GzipFile(fileobj=hashed, mode="rb") as unzipped:
                with tarfile.open(fileobj=unzipped, mode="r|", ignore_zeros=True) as tar:
                    for member in tar:
                        self.member(tar, member)
                while unzipped.read(CHUNK):
                    pass
        except READ_ERRORS as exc:
            raise ArchiveRefused(_changed(f"it cannot be read: {exc}")) from exc
        finally:
            self.folders.close()
        expected = self.files.keys() | ({self.entry["path"]} if self.database else set())
        missing = sorted(expected - self.seen)
        if missing or hashed.finish() != sha256:
            raise ArchiveRefused(_changed(f"{missing[0]} is missing" if missing else
                                          "its SHA-256 differs"))

    def member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        if name == MANIFEST_NAME:
            return
        if not member.isreg() or name in self.seen:
            raise ArchiveRefused(_changed(f"{name} is not a regular file or appears twice"))
        self.seen.add(name)
        if name in self.files:
            *folders, file_name = name.removeprefix(FILES_PREFIX).split("/")
            _write_file(self.folders.open(folders), file_name, tar.extractfile(member),
                        self.report.files_to / name.removeprefix(FILES_PREFIX), self.files[name],
                        member)
            self.report.files += 1
            self.report.bytes += self.files[name][0]
        elif self.entry is None or name != self.entry["path"]:
            raise ArchiveRefused(_changed(f"{name} is not in the manifest"))
        elif self.database is not None:
            try:
                with self.database.open_dump() as dump:
                    _copy_checked(tar.extractfile(member), dump, name,
                                  (self.entry["size"], self.entry["sha256"]))
            except OSError as exc:
                raise DatabaseNotRestored(f"its dump cannot be unpacked: {exc}") from exc


def _changed(reason: str) -> str:
    return f"the archive changed since it was verified: {reason}"


class _Folders:
    """The open descriptors of the folder being written and its parents, down from the top.
    Each is opened with O_NOFOLLOW relative to its parent, so a symlink at any level, even
    one planted during the restore, is refused rather than followed. Members come folder by
    folder, so only the current chain stays open."""

    def __init__(self, top: Path):
        try:
            top.mkdir(FOLDER_MODE, parents=True, exist_ok=True)
            self.fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)]
        except OSError as exc:
            raise TargetRefused(f"{top} cannot be used as the folder: {exc.strerror}") from None
        self.top, self.names = top, []

    def open(self, names: list[str]) -> int:
        keep = 0
        while keep < min(len(names), len(self.names)) and names[keep] == self.names[keep]:
            keep += 1
        while len(self.names) > keep:
            self.names.pop()
            _close_folder(self.fds.pop())
        for name in names[keep:]:
            path = self.top.joinpath(*self.names, name)
            try:
                with suppress(FileExistsError):
                    os.mkdir(name, FOLDER_MODE, dir_fd=self.fds[-1])
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=self.fds[-1])
            except OSError as exc:
                raise TargetRefused(f"{path} is not a folder ({exc.strerror}): not written "
                                    "through") from None
            self.fds.append(fd)
            self.names.append(name)
        return self.fds[-1]

    def close(self) -> None:
        while self.fds:
            _close_folder(self.fds.pop())


def _close_folder(fd: int) -> None:
    try:
        os.fsync(fd)  # the renames in it survive a power loss
    finally:
        os.close(fd)


def _write_file(folder: int, name: str, source: BinaryIO, path: Path,
                expected: tuple[int, str], member: tarfile.TarInfo) -> None:
    """Writes under a temporary name in the file's own folder, checks the bytes against the
    manifest, then renames: whatever stops it, `name` is either left as it was or complete."""
    temporary = f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=folder)
        try:
            with open(fd, "wb", closefd=False) as target:
                _copy_checked(source, target, member.name, expected)
            os.fchmod(fd, member.mode & FILE_MODES)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)
        os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        if isinstance(exc, OSError):
            raise TargetRefused(f"{path} cannot be written: {exc.strerror or exc}") from exc
        raise


def _copy_checked(source: BinaryIO, target: BinaryIO, name: str,
                  expected: tuple[int, str]) -> None:
    """Copies and hashes `source` into `target`, made durable; refuses bytes that differ from
    the manifest's, which the verification had matched: the archive changed since."""
    digest, size = hashlib.sha256(), 0
    while True:
        try:
            chunk = source.read(CHUNK)
        except READ_ERRORS as exc:
            raise ArchiveRefused(_changed(f"{name} cannot be read: {exc}")) from exc
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        target.write(chunk)
    target.flush()
    os.fsync(target.fileno())
    if (size, digest.hexdigest()) != expected:
        raise ArchiveRefused(_changed(f"{name} differs from the manifest"))


# --- Databases -------------------------------------------------------------------------------


class _SqliteTarget:
    engine = "sqlite"

    def __init__(self, path: Path, force: bool):
        self.path, self.force, self.shown = path, force, str(path)
        if not path.parent.is_dir():
            raise TargetRefused(f"the folder of the SQLite database {path} does not exist")
        existing = [name for name in (path, *self.sidecars()) if os.path.lexists(name)]
        if existing and not force:
            raise TargetRefused(f"{existing[0]} already exists (--force replaces the database)")
        self.temporary = path.with_name(f"{path.name}{TEMPORARY_PREFIX}{secrets.token_hex(8)}")

    def sidecars(self) -> list[Path]:
        return [self.path.with_name(self.path.name + suffix) for suffix in SQLITE_SIDECARS]

    def open_dump(self) -> BinaryIO:
        # Owner-only, like the archive: it holds the site's data.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return open(os.open(self.temporary, flags, 0o600), "wb")

    def restore(self) -> None:
        try:
            if self.force:
                for sidecar in self.sidecars():
                    sidecar.unlink(missing_ok=True)
                os.replace(self.temporary, self.path)
            else:
                os.link(self.temporary, self.path)  # refuses a file created since the check
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            _close_folder(fd)
        except OSError as exc:
            raise DatabaseNotRestored(
                f"{self.path} cannot be written: {exc.strerror or exc}") from None

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)


class _PostgresTarget:
    engine = "postgresql"

    def __init__(self, database_url: str, force: bool):
        self.environment, self.password = libpq_environment(database_url)
        self.pg_restore, self.psql = _installed("pg_restore"), _installed("psql")
        self.force, self.shown = force, _without_password(database_url)
        self.folder: str | None = None
        count = self.run([self.psql, "--no-password", "-X", "--no-align", "--tuples-only",
                          "-v", "ON_ERROR_STOP=1", "-c", USER_RELATIONS], "psql").strip()
        if count != "0" and not force:
            raise TargetRefused(f"the database {self.shown} is not empty ({count or '?'} "
                                "tables, sequences or views; --force restores over them)")

    def open_dump(self) -> BinaryIO:
        self.folder = tempfile.mkdtemp(prefix="breakglass-restore-")  # owner-only
        return open(os.path.join(self.folder, "database.dump"), "xb")

    def restore(self) -> None:
        dump = os.path.join(self.folder or "", "database.dump")
        with open(dump, "rb") as file:
            custom = file.read(len(CUSTOM_DUMP_MAGIC)) == CUSTOM_DUMP_MAGIC
        if not custom:
            self.run([self.psql, "--no-password", "-X", "--quiet", "--single-transaction",
                      "-v", "ON_ERROR_STOP=1", "--file", dump], "psql")
            return
        # The database is named in a conninfo string: a name holding "=" stays a name. The
        # host, user and password travel in the environment, never on the command line.
        name = self.environment["PGDATABASE"].replace("\\", "\\\\").replace("'", "\\'")
        self.run([self.pg_restore, "--no-password", "--no-owner", "--no-privileges",
                  "--exit-on-error", "--single-transaction",
                  *(["--clean", "--if-exists"] if self.force else []),
                  f"--dbname=dbname='{name}'", dump], "pg_restore")

    def run(self, command: list[str], tool: str) -> str:
        with tempfile.TemporaryFile() as errors:  # a file, not a pipe: it never fills up
            done = subprocess.run(command, env=self.environment,  # noqa: S603
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=errors, check=False)
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines() or ["?"]
        if done.returncode != 0:
            reason = next((line for line in lines if "error" in line.lower()), lines[-1])
            if self.password:
                reason = reason.replace(self.password, "***")
            raise DatabaseNotRestored(f"{tool} failed (exit {done.returncode}): {reason}")
        return done.stdout.decode(errors="replace")

    def discard(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class _MysqlTarget:
    """A MariaDB or MySQL database, loaded by the client. Its dump holds DDL, which commits by
    itself: a load that fails halfway leaves the tables loaded so far (exit 4 says the database
    was not restored; --force loads again over them, as the dump drops each table first)."""

    engine = "mysql"

    def __init__(self, database_url: str, force: bool):
        try:
            self.server = mysql.parse_mysql_url(database_url)
            count = mysql.count_objects(self.server)
        except ArchiveError as exc:
            raise DatabaseNotRestored(str(exc)) from None
        self.force, self.shown = force, self.server.shown
        self.folder: str | None = None
        if count and not force:
            raise TargetRefused(f"the database {self.shown} is not empty ({count} tables, "
                                "views, routines or events; --force restores over them)")

    def open_dump(self) -> BinaryIO:
        self.folder = tempfile.mkdtemp(prefix="breakglass-restore-")  # owner-only
        return open(os.path.join(self.folder, "database.sql"), "xb")

    def restore(self) -> None:
        try:
            mysql.load_dump(self.server, os.path.join(self.folder or "", "database.sql"))
        except ArchiveError as exc:
            raise DatabaseNotRestored(str(exc)) from None

    def discard(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _installed(tool: str) -> str:
    if (executable := shutil.which(tool)) is None:
        raise DatabaseNotRestored(f"{tool} is not installed (apt-get install postgresql-client)")
    return executable


def _without_password(database_url: str) -> str:
    parts = urlsplit(database_url)
    user, _, host = parts.netloc.rpartition("@")
    user = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))

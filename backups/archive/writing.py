"""Writing an archive: a tar stream hashed as it goes and compressed in a second thread,
under a temporary name until it is complete and durable."""

import fcntl
import hashlib
import json
import os
import queue
import secrets
import stat
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from .dumps import (
    CompressedDump,
    check_database_url,
    database_estimate,
    dump_database,
    stream_mysql_dump,
)
from .layout import (
    CHUNK,
    FILES_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    MYSQL_DUMP_MEMBER,
    PARTIAL_NAME,
    ArchiveError,
)
from .mysql import MYSQL_SCHEMES
from .remote import RemoteFailed, RemoteSite
from .tree import FORBIDDEN_REASON, Guard, files_root, regular_files, tree_size

GZIP_LEVEL = 6  # gzip's and `tar -cz`'s default
QUEUED_CHUNKS = 8  # bounds the memory between the reading and the compressing thread
PROGRESS_INTERVAL = 0.25  # seconds

Progress = Callable[[str, int, int], None]


class Upload(Protocol):
    """Where an archive's bytes go instead of a file (backups.archive_store.MultipartUpload)."""

    def write(self, data: bytes) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def complete(self, *, sha256: str) -> None: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    size: int
    sha256: str  # of the .tar.gz as written: what the download is checked against
    files: int
    # The manifest without its per-file list, which stays in the archive so that memory does
    # not grow with the number of files.
    manifest: dict


def write_archive(*, website: str, files_dir: Path | str | None, database_url: str | None,
                  destination: Path, progress: Progress | None = None,
                  guard: Guard | None = None, remote: RemoteSite | None = None,
                  upload: "Upload | None" = None) -> ArchiveResult:
    """Streams `files_dir` and a dump of `database_url` into the archive `destination`.
    With `remote`, both are on that server: `files_dir` is its real folder there (a string)
    and the database is dumped there.

    It is written as `<destination>.partial-<token>`, fsynced, then renamed, so `destination`
    only ever names a complete archive. Files that cannot be read are listed as skipped in the
    manifest. Raises ArchiveError (or OSError when the disk fails); partial files are removed
    unless the process is killed, for which `clean_partials` exists. A `guard` (what the
    backup may read) checks the files directory as opened and skips forbidden files in it.

    With `upload` (an object store's multipart upload), the archive's bytes go there instead,
    and `destination` only places the temporary files; the upload is completed (checked by
    the store) where the rename would be, and aborted on any failure.
    """
    if files_dir is None and database_url is None:
        raise ArchiveError("nothing to back up: neither a files directory nor a database URL")
    if upload is None and destination.exists():
        raise ArchiveError(f"{destination} already exists")
    if remote is not None:
        top = None
        if database_url is not None and urlsplit(database_url).scheme not in MYSQL_SCHEMES:
            raise ArchiveError("over SSH only a MariaDB/MySQL database can be dumped")
    else:
        top = files_root(Path(files_dir)) if files_dir is not None else None
    if database_url is not None:
        check_database_url(database_url)
    estimate = database_estimate(database_url) if remote is None else 0
    tracker = _Tracker(progress, estimate)
    if top is not None:
        tracker.current = "sizing"  # told only if the walk lasts: through keepalive
        tracker.total += tree_size(top, guard, keepalive=tracker.keepalive)
    elif remote is not None and files_dir is not None:
        tracker.total += remote.tree_size(str(files_dir))
    partial = destination.with_name(f"{destination.name}.partial-{secrets.token_hex(8)}")
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "website": website,
                "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "files_count": 0, "files_bytes": 0, "database": None, "skipped": []}
    try:
        archive = _write(partial, tracker, manifest, top, (database_url, estimate), guard,
                         remote, files_dir if remote is not None else None, upload)
        if upload is not None:
            upload.complete(sha256=archive.sha256)
        else:
            os.replace(partial, destination)
            _fsync_directory(destination.parent)
    except BaseException:
        if upload is not None:
            upload.abort()
        partial.unlink(missing_ok=True)
        raise
    tracker.phase("finishing", final=True)
    return ArchiveResult(destination, archive.size, archive.sha256, manifest["files_count"],
                         manifest)


def _write(partial: Path, tracker: "_Tracker", manifest: dict, top: Path | None,
           database: tuple[str | None, int], guard: Guard | None, remote: RemoteSite | None,
           remote_folder: str | None, upload: "Upload | None") -> "_ArchiveWriter":
    dump = partial.with_name(f"{partial.name}.database")
    try:
        with _ArchiveWriter(partial, tracker, upload) as archive:
            if top is not None:
                tracker.phase("files")
                _add_files(archive, top, manifest, guard)
            if remote is not None and remote_folder is not None:
                tracker.phase("files")
                _add_remote_files(archive, remote, remote_folder, manifest)
            if database[0] is not None:
                tracker.phase("database")
                manifest["database"] = _add_database(archive, database, dump, guard, remote)
            tracker.phase("finishing")
            archive.finish(manifest)
    finally:
        dump.unlink(missing_ok=True)
    return archive


def clean_partials(folder: Path, older_than: timedelta) -> list[Path]:
    """Removes the temporaries of backups that died (killed worker, power loss) from `folder`:
    files named `<archive>.partial-<token>...` last modified more than `older_than` ago. A
    backup still being written holds a lock on its files and is never touched; `older_than`
    (a few seconds at least) covers the instant between a temporary's creation and its lock.
    Safe to run from several processes at once."""
    cutoff = time.time() - older_than.total_seconds()
    removed = []
    for entry in os.scandir(folder):
        if PARTIAL_NAME.search(entry.name) and _abandoned(entry, cutoff):
            with suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return sorted(removed)


def _abandoned(entry: os.DirEntry, cutoff: float) -> bool:
    try:
        if not entry.is_file(follow_symlinks=False) or (
                entry.stat(follow_symlinks=False).st_mtime > cutoff):
            return False
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # another sweep got there first
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its backup is still running
    finally:
        os.close(fd)
    return True


# --- Writing ---------------------------------------------------------------------------------


class _Tracker:
    """Calls `progress(phase, done_bytes, total_bytes)` a few times a second at most."""

    def __init__(self, callback: Progress | None, total: int):
        self.callback, self.total, self.done = callback, total, 0
        self.current, self.last = "", time.monotonic()

    def phase(self, name: str, *, final: bool = False) -> None:
        self.current = name
        if final:
            self.total = max(self.total, self.done)
        self.report()

    def advance(self, count: int) -> None:
        self.done += count
        self.keepalive()

    def keepalive(self) -> None:
        if time.monotonic() - self.last >= PROGRESS_INTERVAL:
            self.report()

    def report(self) -> None:
        if self.callback is not None:
            self.last = time.monotonic()
            self.callback(self.current, self.done, self.total)


class _GzipSink:
    """Compresses in a second thread (zlib releases the GIL), so that reading, hashing and tar
    framing on one core overlap compression on the other; hashes the bytes as written."""

    def __init__(self, file):
        self.file, self.size, self.digest = file, 0, hashlib.sha256()
        self.pending = bytearray()
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUED_CHUNKS)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._compress, name="backup-gzip", daemon=True)
        self.thread.start()

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        if not self.pending and len(data) >= CHUNK:
            self.queue.put(data)  # file data: no copy
            return
        self.pending += data  # tar headers and padding: batched
        if len(self.pending) >= CHUNK:
            self.queue.put(bytes(self.pending))
            self.pending.clear()

    def splice(self, member: BinaryIO) -> None:
        """Ends the current gzip member and appends `member`, a complete gzip member (a dump
        compressed as it was made), read from its start; what is written next starts a new
        member. A .tar.gz of several members is one stream to every gzip reader (RFC 1952)."""
        self.queue.put(bytes(self.pending))
        self.pending.clear()
        self.queue.put(_Splice(member))

    def close(self) -> None:
        self.queue.put(bytes(self.pending))
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _compress(self) -> None:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
        while (chunk := self.queue.get()) is not None:
            if self.error is None:  # after a failure, keep draining so the writer never blocks
                try:
                    if isinstance(chunk, _Splice):
                        self._emit(compressor.flush())
                        while data := chunk.member.read(CHUNK):
                            self._emit(data)
                        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
                    else:
                        self._emit(compressor.compress(chunk))
                except BaseException as exc:
                    self.error = exc
            if isinstance(chunk, _Splice):
                chunk.member.close()
        if self.error is None:
            try:
                self._emit(compressor.flush())
            except BaseException as exc:
                self.error = exc

    def _emit(self, data: bytes) -> None:
        self.digest.update(data)
        self.file.write(data)
        self.size += len(data)


@dataclass(frozen=True)
class _Splice:
    member: BinaryIO


class _ArchiveWriter:
    """A tar stream written straight into a gzip sink: headers from tarfile, data copied in
    bounded chunks and hashed on the way, so each source file is read once."""

    def __init__(self, path: Path, tracker: _Tracker, upload: "Upload | None" = None):
        self.tracker, self.offset = tracker, 0
        self.upload = upload
        self.file = upload if upload is not None else open(  # noqa: SIM115
            _create_locked(path), "wb", buffering=CHUNK)
        self.sink = _GzipSink(self.file)
        # The manifest's per-file lines wait in an anonymous file, not in memory.
        self.entries = tempfile.TemporaryFile(dir=path.parent)  # noqa: SIM115

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is not None:
            with suppress(BaseException):
                self.sink.close()
        self.entries.close()
        self.file.close()  # also drops the lock

    def member(self, name: str, size: int, chunks: Iterator[bytes], *, mode: int = 0o600,
               mtime: float | None = None) -> tuple[str, bool]:
        """Writes one member of `size` bytes; returns its SHA-256 and whether `chunks` held a
        different length (a file that changed while read is cut or zero-padded to `size`)."""
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, mode & 0o777
        info.mtime = int(time.time() if mtime is None else mtime)
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        digest, remaining, changed = hashlib.sha256(), size, False
        for chunk in chunks if size else ():
            if len(chunk) > remaining:
                chunk, changed = chunk[:remaining], True
            digest.update(chunk)
            self._write(chunk)
            self.tracker.advance(len(chunk))
            remaining -= len(chunk)
            if not remaining:
                break
        changed = changed or remaining > 0 or next(chunks, b"") != b""
        for start in range(0, remaining, CHUNK):
            zeros = bytes(min(CHUNK, remaining - start))
            digest.update(zeros)
            self._write(zeros)
        self._write(bytes(-size % tarfile.BLOCKSIZE))
        return digest.hexdigest(), changed

    def spliced_member(self, name: str, size: int, member: BinaryIO) -> None:
        """Writes one member whose `size` bytes of data are already compressed, as a complete
        gzip member, in `member`; the data was hashed while it was compressed."""
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, int(time.time())
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.sink.splice(member)
        self.offset += size
        self._write(bytes(-size % tarfile.BLOCKSIZE))

    def add_entry(self, entry: dict) -> None:
        separator = b",\n" if self.entries.tell() else b""
        self.entries.write(separator + b"  " + json.dumps(entry).encode())

    def finish(self, manifest: dict) -> None:
        """Appends the manifest and the end of the archive, then makes the file durable."""
        head = (json.dumps(manifest, indent=1)[:-2] + ',\n "files": [\n').encode()
        tail = b"\n ]\n}\n"
        size = len(head) + self.entries.tell() + len(tail)
        self.entries.seek(0)
        body = iter(lambda: self.entries.read(CHUNK), b"")
        self.member(MANIFEST_NAME, size, chain([head], body, [tail]), mode=0o644)
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        self._write(bytes(-self.offset % tarfile.RECORDSIZE))
        self.sink.close()
        self.file.flush()
        if self.upload is None:  # an upload is made durable by its completion
            os.fsync(self.file.fileno())
        self.size, self.sha256 = self.sink.size, self.sink.digest.hexdigest()

    def _write(self, data: bytes) -> None:
        self.sink.write(data)
        self.offset += len(data)


def _create_locked(path: Path) -> int:
    """Creates `path` for this backup alone (owner-only: it holds the site's data) and locks it
    so that `clean_partials` leaves it alone while this process lives."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- Files and database ------------------------------------------------------------------------


def _add_files(archive: _ArchiveWriter, top: Path, manifest: dict, guard: Guard | None) -> None:
    def skip(path: str, reason: str) -> None:
        manifest["skipped"].append({"path": FILES_PREFIX + path, "reason": reason})

    for path, dir_fd, entry in regular_files(top, skip, guard):
        try:
            fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        except OSError as exc:
            skip(path, exc.strerror or str(exc))
            continue
        try:
            if guard is not None and guard.is_forbidden(os.fstat(fd)):
                skip(path, FORBIDDEN_REASON)  # a hard link to one of Breakglass's own files
                continue
            _add_file(archive, path, fd, manifest, skip)
        finally:
            os.close(fd)


def _add_file(archive: _ArchiveWriter, path: str, fd: int, manifest: dict, skip) -> None:
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):  # swapped for a fifo or device since it was listed
        skip(path, "not a regular file")
        return
    errors: list[str] = []
    name = FILES_PREFIX + path
    sha256, changed = archive.member(name, before.st_size, _read_chunks(fd, errors),
                                     mode=before.st_mode, mtime=before.st_mtime)
    entry = {"path": name, "size": before.st_size, "sha256": sha256}
    if errors:
        entry["error"] = f"read failed, the rest is zeros: {errors[0]}"
    elif changed or os.fstat(fd).st_mtime_ns != before.st_mtime_ns:
        entry["changed"] = True
    archive.add_entry(entry)
    manifest["files_count"] += 1
    manifest["files_bytes"] += before.st_size


def _read_chunks(fd: int, errors: list[str]) -> Iterator[bytes]:
    try:
        while chunk := os.read(fd, CHUNK):
            yield chunk
    except OSError as exc:
        errors.append(exc.strerror or str(exc))


def _add_remote_files(archive: _ArchiveWriter, remote: RemoteSite, folder: str,
                      manifest: dict) -> None:
    """Reads the server's tar stream member by member: regular files are hashed and written
    as ours; links, devices and unsafe names are listed as skipped, never extracted. A stream
    that ends early (a dropped connection) fails the backup."""
    def skip(path: str, reason: str) -> None:
        manifest["skipped"].append({"path": FILES_PREFIX + path, "reason": reason})

    address = remote.source.address
    with remote.files(folder) as (stream, finish):
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                while (member := tar.next()) is not None:
                    _add_remote_member(archive, tar, member, manifest, skip)
                    tar.members.clear()  # read once: tarfile would keep every member
        except (tarfile.TarError, EOFError) as exc:
            # A tar that refused to start (an old or BusyBox tar) says why on stderr; a
            # connection that dropped makes finish() say so.
            status, lines = finish(allowed=tuple(range(256)))
            if status != 0 and lines:
                raise RemoteFailed(f"tar on {address} failed (exit {status}): "
                                   f"{lines[-1].strip()}") from None
            raise RemoteFailed(f"the files from {address} ended early: {exc}") from None
        # GNU tar: 1 "some files changed while being archived", 2 fatal or unreadable files,
        # each named on stderr. A stream that ends cleanly with 2 lists its unreadable files.
        status, warnings = finish(allowed=(0, 1, 2))
    for line in warnings:
        if line.startswith("tar: ./") and ": " in line[7:]:
            path, _, reason = line[7:].partition(": ")
            if reason != "file changed as we read it":  # archived all the same
                skip(path, reason)
        elif line.strip() and status == 2:
            raise RemoteFailed(f"tar on {address} failed: {line.strip()}")


def _add_remote_member(archive: _ArchiveWriter, tar: tarfile.TarFile, member: tarfile.TarInfo,
                       manifest: dict, skip) -> None:
    path = member.name.removeprefix("./")
    if member.isdir() or path in ("", "."):
        return
    parts = path.split("/")
    if member.name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        skip(path, "an unsafe name, not archived")
        return
    if member.issym():
        skip(path, f"symlink to {member.linkname}, not followed")
        return
    if not member.isreg():
        skip(path, "not a regular file")
        return
    data = tar.extractfile(member)
    sha256, _ = archive.member(FILES_PREFIX + path, member.size,
                               iter(lambda: data.read(CHUNK), b""), mode=member.mode,
                               mtime=member.mtime)
    archive.add_entry({"path": FILES_PREFIX + path, "size": member.size, "sha256": sha256})
    manifest["files_count"] += 1
    manifest["files_bytes"] += member.size


def _add_database(archive: _ArchiveWriter, database: tuple[str, int], dump: Path,
                  guard: Guard | None, remote: RemoteSite | None = None) -> dict:
    """Dumps the database to `dump` (a partial name beside the archive, locked like it) and
    streams the dump in; a pg_dump's size is not known before it ends, and a tar header needs
    it. A MariaDB/MySQL dump is compressed into that file as it is made, then spliced in."""
    database_url, estimate = database
    if remote is not None or urlsplit(database_url).scheme in MYSQL_SCHEMES:
        return _add_streamed_dump(archive, database_url, dump, remote)
    lock = _create_locked(dump)
    try:
        engine, name = dump_database(database_url, dump, keepalive=archive.tracker.report,
                                     confirm=guard.check_open_database if guard else None)
        fd = os.open(dump, os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(lock)
    try:
        size = os.fstat(fd).st_size
        archive.tracker.total += size - estimate
        errors: list[str] = []
        sha256, changed = archive.member(name, size, _read_chunks(fd, errors))
    finally:
        os.close(fd)
        dump.unlink()  # its disk space, as early as possible
    if errors or changed:
        raise ArchiveError(f"the database dump could not be read back: {errors or 'changed'}")
    return {"path": name, "engine": engine, "size": size, "sha256": sha256}


def _add_streamed_dump(archive: _ArchiveWriter, database_url: str, dump: Path,
                       remote: RemoteSite | None) -> dict:
    tracker = archive.tracker

    def progress(count: int) -> None:
        tracker.total += count
        tracker.advance(count)

    with open(_create_locked(dump), "wb") as file:
        sink = CompressedDump(file, progress)
        if remote is not None:
            remote.dump_mysql(database_url, sink, tracker.keepalive)
        else:
            stream_mysql_dump(database_url, sink, tracker.keepalive)
        sink.finish()
        # The sink's thread reads the member to its end before the archive is finished,
        # through a descriptor of its own (closed there) that keeps the data once the name is
        # gone; the lock stays until then too.
        member = open(dump, "rb")  # noqa: SIM115
        archive.spliced_member(MYSQL_DUMP_MEMBER, sink.size, member)
    dump.unlink()
    return {"path": MYSQL_DUMP_MEMBER, "engine": "mysql", "size": sink.size,
            "sha256": sink.digest.hexdigest()}

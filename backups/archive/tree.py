"""Walking a website's files directory for the archive: regular files only, in a stable
order, never following a symlink out of the tree."""

import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Protocol

from .layout import ArchiveError

Skip = Callable[[str, str], None]  # (path relative to the top, reason)
FORBIDDEN_REASON = "Breakglass's own file, never archived"


class Guard(Protocol):
    """What the backup may read (backups.sources.SourcePolicy), checked on what is opened."""

    def check_open_folder(self, fd: int, path: Path) -> None: ...

    def is_forbidden(self, status: os.stat_result) -> bool: ...

    def check_open_database(self, fd: int) -> None: ...


def files_root(files_dir: Path) -> Path:
    # The configured folder may itself be a symlink (a deploy's `current` release); nothing
    # under it is followed.
    top = files_dir.resolve()
    if not top.is_dir():
        raise ArchiveError(f"the files directory {files_dir} does not exist")
    return top


def tree_size(top: Path, guard: Guard | None = None,
              keepalive: Callable[[], None] | None = None) -> int:
    """The bytes under `top`. `keepalive` is called at every file: sizing a huge tree takes
    longer than a backup job may stay silent (backups.jobs.STALE_AFTER)."""
    total = 0
    for _, _, entry in regular_files(top, lambda path, reason: None, guard):
        with suppress(OSError):  # gone since it was listed: the walk proper will say so
            total += entry.stat(follow_symlinks=False).st_size
        if keepalive is not None:
            keepalive()
    return total


def regular_files(top: Path, skip: Skip,
                  guard: Guard | None = None) -> Iterator[tuple[str, int, os.DirEntry]]:
    """Yields (relative path, directory fd, DirEntry) for every regular file under `top`, in
    name order. Each folder is opened with O_NOFOLLOW relative to its parent's descriptor, so a
    folder swapped for a symlink during the walk is refused, never followed. Symlinks, sockets
    and other non-regular entries are reported to `skip`. A `guard` checks the top folder as
    opened (its path may have changed since it was checked) and skips its forbidden folders."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if guard is not None:
        try:
            guard.check_open_folder(fd, top)
        except BaseException:
            os.close(fd)
            raise
    yield from _walk(fd, "", skip, guard)


def _walk(dir_fd: int, prefix: str, skip: Skip,
          guard: Guard | None) -> Iterator[tuple[str, int, os.DirEntry]]:
    try:
        try:
            with os.scandir(dir_fd) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            skip(prefix, exc.strerror or str(exc))
            return
        folders = []
        for entry in entries:
            try:
                is_dir, is_file = (entry.is_dir(follow_symlinks=False),
                                   entry.is_file(follow_symlinks=False))
            except OSError as exc:  # gone since the listing, on a filesystem without d_type
                skip(prefix + entry.name, exc.strerror or str(exc))
                continue
            if is_dir:
                folders.append(entry.name)
            elif is_file:
                yield prefix + entry.name, dir_fd, entry
            else:
                skip(prefix + entry.name, _kind(entry, dir_fd))
        for name in folders:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=dir_fd)
            except OSError as exc:
                skip(f"{prefix}{name}/", exc.strerror or str(exc))
                continue
            if guard is not None and guard.is_forbidden(os.fstat(fd)):
                os.close(fd)
                skip(f"{prefix}{name}/", FORBIDDEN_REASON)
                continue
            yield from _walk(fd, f"{prefix}{name}/", skip, guard)
    finally:
        os.close(dir_fd)


def _kind(entry: os.DirEntry, dir_fd: int) -> str:
    if entry.is_symlink():
        with suppress(OSError):
            return f"symlink to {os.readlink(entry.name, dir_fd=dir_fd)}, not followed"
    return "not a regular file"

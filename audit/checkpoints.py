"""Copies of the audit chain head kept outside the database: one object per checkpoint in the
checkpoint storage (CHECKPOINT_DIR on this node, or the S3 store's checkpoints/ prefix that
every node shares), never rewritten, and, with CHECKPOINT_SYSLOG, one syslog line each.

A deleted tail of the trail, with its head rewound, still contradicts the newest checkpoint:
`verify_audit --checkpoint` reads them all back from the storage (or from a folder or a
JSON-lines file copied out of it)."""

import json
import logging
import logging.handlers
import os
import socket
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages

# The single file of earlier versions, read alongside the objects when it is still there.
LEGACY_FILE = "audit-checkpoints.jsonl"
PREFIX = "audit-checkpoint-"

logger = logging.getLogger(__name__)


class CheckpointUnreadable(Exception):
    pass


def checkpoint_storage() -> Storage:
    if "checkpoints" in settings.STORAGES:
        return storages["checkpoints"]
    return FileSystemStorage(location=settings.CHECKPOINT_DIR)


def object_name(sequence: int, written_at: datetime) -> str:
    """Sorted by time as text; unique (the sequence and microseconds), so never overwritten."""
    return f"{PREFIX}{written_at:%Y%m%dT%H%M%S%fZ}-{sequence:012d}.json"


def line(sequence: int, mac: str, written_at: datetime) -> str:
    return json.dumps({"sequence": sequence, "mac": mac, "written_at": written_at.isoformat()})


def store_checkpoint(sequence: int, mac: str, written_at: datetime) -> str:
    """Writes one new object and returns its name. On a folder it is made durable (fsync of
    the file and the folder) before this returns, as the single file was."""
    storage = checkpoint_storage()
    text = line(sequence, mac, written_at) + "\n"
    name = storage.save(object_name(sequence, written_at), ContentFile(text.encode()))
    if isinstance(storage, FileSystemStorage):
        path = Path(storage.path(name))
        for target, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY | os.O_DIRECTORY)):
            fd = os.open(target, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return name


def send_to_syslog(sequence: int, mac: str, written_at: datetime) -> None:
    """One line to CHECKPOINT_SYSLOG, when set; a syslog that is away is logged, never fatal
    (the stored object is the checkpoint; the line is a second copy)."""
    if not settings.CHECKPOINT_SYSLOG:
        return
    try:
        handler = _syslog_handler(settings.CHECKPOINT_SYSLOG)
    except OSError:
        logger.warning("audit checkpoint %s not sent: syslog %s unreachable", sequence,
                       settings.CHECKPOINT_SYSLOG, exc_info=True)
        return
    handler.ident = "breakglass: "
    record = logging.LogRecord("breakglass.checkpoint", logging.INFO, __file__, 0,
                               "audit-checkpoint %s", (line(sequence, mac, written_at),), None)
    try:
        handler.emit(record)
    finally:
        handler.close()


def _syslog_handler(target: str) -> logging.handlers.SysLogHandler:
    facility = logging.handlers.SysLogHandler.LOG_AUTHPRIV
    if target.startswith("/"):
        return logging.handlers.SysLogHandler(address=target, facility=facility)
    parts = urlsplit(target)
    kind = socket.SOCK_STREAM if parts.scheme == "tcp" else socket.SOCK_DGRAM
    return logging.handlers.SysLogHandler(address=(parts.hostname, parts.port or 514),
                                          facility=facility, socktype=kind)


def read_stored_checkpoints() -> dict[int, str]:
    """Every checkpoint in the checkpoint storage: sequence -> MAC."""
    storage = checkpoint_storage()
    checkpoints: dict[int, str] = {}
    try:
        _, names = storage.listdir("")
    except FileNotFoundError:
        return checkpoints
    except Exception as exc:
        raise CheckpointUnreadable(f"cannot list the checkpoint storage: {exc}") from exc
    for name in sorted(names):
        if not (name.startswith(PREFIX) or name == LEGACY_FILE):
            continue
        with storage.open(name, "rb") as handle:
            checkpoints.update(_parse(handle.read().decode("utf-8"), name))
    return checkpoints


def read_checkpoint_copy(path: Path) -> dict[int, str]:
    """Checkpoints copied out of the storage: a folder of its objects, or a JSON-lines file
    (the single file of earlier versions, or lines gathered from syslog)."""
    try:
        if path.is_dir():
            checkpoints: dict[int, str] = {}
            for item in sorted(path.iterdir()):
                if item.name.startswith(PREFIX) or item.name == LEGACY_FILE:
                    checkpoints.update(_parse(item.read_text(encoding="utf-8"), item.name))
            return checkpoints
        return _parse(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise CheckpointUnreadable(f"cannot read checkpoint file {path}: {exc}") from exc


SYSLOG_MARK = "audit-checkpoint {"


def _parse(text: str, source: str) -> dict[int, str]:
    """JSON lines; a syslog line is read from its mark on, and other syslog lines skipped."""
    checkpoints = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if not raw.startswith("{"):
            if SYSLOG_MARK not in raw:
                continue
            raw = raw[raw.index(SYSLOG_MARK) + len(SYSLOG_MARK) - 1:]
        try:
            entry = json.loads(raw)
            checkpoints[int(entry["sequence"])] = str(entry["mac"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointUnreadable(
                f"cannot read checkpoint file {source}: line {number}: {exc}") from exc
    return checkpoints

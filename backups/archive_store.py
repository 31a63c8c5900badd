"""Where finished backup archives live: BACKUP_ROOT on this node, or the S3-compatible store
that every node shares (STORAGES["backups"], set by S3_BUCKET).

On a store, an archive is written as a multipart upload while it is made, so no node needs
room for a whole archive; S3 shows no object until the upload is completed, which is the
store's form of "written under a temporary name, renamed when complete". Each part carries
its SHA-256, which the store checks on arrival, and the completed object is checked against
the size and checksum the writer computed before the job may be recorded complete."""

import base64
import hashlib
import logging
import queue
import re
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages

from backups.archive import ArchiveError

logger = logging.getLogger(__name__)

# How many finished parts may wait for the network while the next is filled: the writer
# runs ahead of the upload by at most this many parts (memory: parts + 1 buffers).
QUEUED_PARTS = 2


def archive_store() -> "ArchiveStore":
    if "backups" in settings.STORAGES:
        return ArchiveStore(storages["backups"])
    # Read on every call: BACKUP_ROOT is a plain setting, and the folder may change under tests.
    return ArchiveStore(FileSystemStorage(location=settings.BACKUP_ROOT))


@dataclass(frozen=True)
class Removal:
    """What the store answered to a deletion: `deleted`, or `already absent`."""

    answer: str


class ArchiveStore:
    def __init__(self, storage: Storage):
        self.storage = storage
        self.local = isinstance(storage, FileSystemStorage)

    @property
    def description(self) -> str:
        if self.local:
            return f"folder {self.storage.location}"
        return f"bucket {self.storage.bucket_name}/{self.storage.location}"

    def path(self, name: str) -> Path:
        """On this node's disk: the archive's final path (the writer renames into it)."""
        return Path(self.storage.path(name))

    def spool_folder(self, name: str) -> Path:
        """This node's folder for the writer's temporary files beside a stored archive (the
        manifest's list, a database dump): BACKUP_ROOT, where the stale sweep cleans them."""
        folder = Path(settings.BACKUP_ROOT) / Path(name).parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def start_upload(self, name: str) -> "MultipartUpload":
        return MultipartUpload(self._client(), self.storage.bucket_name, self._key(name),
                               part_bytes=settings.S3_UPLOAD_PART_BYTES,
                               extra=dict(self.storage.object_parameters))

    def open(self, name: str) -> BinaryIO:
        """The archive as a file object read in chunks: never copied whole to a node's disk
        or memory first (django-storages' S3File would spool the object before the first
        byte)."""
        if self.local:
            return self.storage.open(name, "rb")
        response = self._client().get_object(Bucket=self.storage.bucket_name,
                                              Key=self._key(name))
        return response["Body"]

    def delete(self, name: str) -> Removal:
        """Deletes the archive and confirms with the store that it is gone. Raises
        ArchiveError when the store refused or still lists it."""
        try:
            existed = self.storage.exists(name)
            if existed:
                self.storage.delete(name)
            if self.storage.exists(name):
                raise ArchiveError(f"{name} is still in the {self.description} after deletion")
        except ArchiveError:
            raise
        except Exception as exc:  # the store's own error, for the audit trail
            raise ArchiveError(f"the {self.description} refused to delete {name}: "
                               f"{type(exc).__name__}: {exc}") from exc
        return Removal("deleted" if existed else "already absent")

    def abort_abandoned_uploads(self, older_than: timedelta,
                                running: Callable[[], set[int]]) -> list[str]:
        """Incomplete uploads a killed worker left behind, older than `older_than`, unless
        their job is among `running()`, which is read after the listing: an upload listed was
        begun by a job already claimed, so a live one is always spared. On a folder: nothing
        to do here (backups.archive.clean_partials removes the writer's partial files)."""
        if self.local:
            return []
        client, bucket = self._client(), self.storage.bucket_name
        cutoff = datetime.now(UTC) - older_than
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=self._key(""))
        uploads = [upload for page in pages for upload in page.get("Uploads", [])
                   if upload["Initiated"] <= cutoff]
        if not uploads:
            return []
        spare = running()
        aborted = []
        for upload in uploads:
            if _job_of(upload["Key"]) in spare:
                continue
            with suppress(client.exceptions.NoSuchUpload):  # completed meanwhile
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                              UploadId=upload["UploadId"])
                aborted.append(upload["Key"])
        return aborted

    def _client(self):
        return self.storage.connection.meta.client

    def _key(self, name: str) -> str:
        location = self.storage.location.strip("/")
        return f"{location}/{name}" if location else name


_JOB_IN_NAME = re.compile(r"-(\d+)-\d{8}T\d{6}Z\.tar\.gz$")


def _job_of(key: str) -> int | None:
    match = _JOB_IN_NAME.search(key)
    return int(match.group(1)) if match else None


class MultipartUpload:
    """A write-only file whose bytes become one S3 object, in parts sent by a second thread
    while the writer goes on. Nothing is visible in the bucket until `complete`."""

    def __init__(self, client, bucket: str, key: str, *, part_bytes: int, extra: dict):
        self.client, self.bucket, self.key = client, bucket, key
        self.part_bytes = part_bytes
        self.upload_id = client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType="application/gzip",
            ChecksumAlgorithm="SHA256", **extra)["UploadId"]
        self.buffer = bytearray()
        self.queued = 0
        self.parts: list[dict] = []
        self.part_digests: list[bytes] = []
        self.size = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUED_PARTS)
        self.thread = threading.Thread(target=self._send_parts, name="backup-upload",
                                       daemon=True)
        self.thread.start()

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        self.buffer += data
        self.size += len(data)
        while len(self.buffer) >= self.part_bytes:
            self.queue.put(bytes(self.buffer[:self.part_bytes]))
            self.queued += 1
            del self.buffer[:self.part_bytes]
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the bytes are durable once `complete` returns."""

    def close(self) -> None:
        """The writer's close: the upload itself ends with `complete` or `abort`."""

    def complete(self, *, sha256: str) -> None:
        """Sends the last part, completes the upload, then checks the stored object: its
        size, and that its bytes are the `sha256` the writer computed (through the parts'
        checksums the store verified)."""
        if self.buffer or not self.queued:
            self.queue.put(bytes(self.buffer))  # S3 needs one part, even an empty one
            self.queued += 1
            self.buffer.clear()
        self._stop_sender()
        if self.error is not None:
            raise ArchiveError(f"upload of {self.key} failed: {self.error}") from self.error
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts})
        head = self.client.head_object(Bucket=self.bucket, Key=self.key, ChecksumMode="ENABLED")
        expected = _composite_checksum(self.part_digests)
        stored = head.get("ChecksumSHA256")
        problems = []
        if head["ContentLength"] != self.size:
            problems.append(f"holds {head['ContentLength']} bytes, not {self.size}")
        if stored is not None and stored.split("-")[0] != expected:
            problems.append("its checksum differs from the bytes sent")
        if problems:
            with suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
            raise ArchiveError(f"the stored {self.key} " + " and ".join(problems))
        self.sha256 = sha256

    def abort(self) -> None:
        self._stop_sender()
        with suppress(Exception):  # the stale sweep aborts it later if the store is away
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key,
                                               UploadId=self.upload_id)

    def _stop_sender(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def _send_parts(self) -> None:
        while (body := self.queue.get()) is not None:
            if self.error is not None:
                continue  # keep draining so the writer never blocks
            try:
                digest = hashlib.sha256(body).digest()
                checksum = base64.b64encode(digest).decode()
                number = len(self.parts) + 1
                answer = self.client.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                    PartNumber=number, Body=body, ChecksumSHA256=checksum)
                self.parts.append({"PartNumber": number, "ETag": answer["ETag"],
                                   "ChecksumSHA256": checksum})
                self.part_digests.append(digest)
            except BaseException as exc:
                self.error = exc


def _composite_checksum(part_digests: list[bytes]) -> str:
    """S3's checksum of a multipart object: the SHA-256 of its parts' SHA-256 digests."""
    return base64.b64encode(hashlib.sha256(b"".join(part_digests)).digest()).decode()

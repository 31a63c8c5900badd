"""Verifying an archive: one streaming pass that re-hashes every member against the manifest."""

import gzip
import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .layout import CHUNK, FORMAT, FORMAT_VERSION, MANIFEST_NAME

MANIFEST_LIMIT = 256 << 20


@dataclass
class VerifyReport:
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    files: int = 0  # file members whose size and checksum match the manifest
    database: bool = False  # a database dump is present and matches
    manifest: dict = field(default_factory=dict)
    sha256: str = ""  # of the whole archive file


def verify_archive(path: Path) -> VerifyReport:
    """Streams the archive once and re-hashes every member against its manifest. Any damage (a
    truncated or corrupt gzip or tar stream, a missing, extra or altered member, an edited
    manifest) becomes a problem in the report, never an exception."""
    report = VerifyReport()
    try:
        raw = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        report.problems.append(f"cannot read the archive: {exc.strerror or exc}")
        return report
    with raw:
        hashed = HashingReader(raw)
        members, manifest_bytes = _read_members(hashed, report.problems)
        report.sha256 = hashed.finish()
    manifest = _parse_manifest(manifest_bytes, report.problems)
    if manifest is not None:
        report.manifest = manifest
        _compare(manifest, members, report)
    report.ok = not report.problems
    return report


class HashingReader:
    def __init__(self, raw):
        self.raw, self.digest = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def finish(self) -> str:
        while chunk := self.raw.read(CHUNK):
            self.digest.update(chunk)
        return self.digest.hexdigest()


def _read_members(source, problems: list[str]) -> tuple[dict, bytes | None]:
    members: dict[str, tuple[int, str]] = {}
    manifest = None
    try:
        with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
            # ignore_zeros: members hidden after the end-of-archive marker, which `tar -i`
            # would extract, are read (and reported) too.
            with tarfile.open(fileobj=unzipped, mode="r|", ignore_zeros=True) as tar:
                for member in tar:
                    if problem := _member_problem(member, members, manifest is not None):
                        problems.append(problem)
                    elif member.name == MANIFEST_NAME:
                        manifest = _read_manifest(tar.extractfile(member), problems)
                    else:
                        members[member.name] = (member.size, _sha256(tar.extractfile(member)))
            while unzipped.read(CHUNK):  # to the end, where gzip checks its CRC
                pass
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        problems.append(f"the archive is damaged or truncated: {exc}")
    return members, manifest


def _member_problem(member: tarfile.TarInfo, seen: dict, manifest_seen: bool) -> str | None:
    if not member.isreg():
        return f"unexpected member that is not a regular file: {member.name}"
    if member.name.startswith("/") or ".." in member.name.split("/"):
        return f"unsafe member name: {member.name}"
    if member.name in seen or (member.name == MANIFEST_NAME and manifest_seen):
        return f"duplicate member: {member.name}"
    return None


def _read_manifest(source, problems: list[str]) -> bytes | None:
    data = source.read(MANIFEST_LIMIT + 1)
    if len(data) > MANIFEST_LIMIT:
        problems.append(f"manifest.json is larger than {MANIFEST_LIMIT >> 20} MiB")
        return None
    return data


def _sha256(source) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _parse_manifest(data: bytes | None, problems: list[str]) -> dict | None:
    if data is None:
        problems.append("manifest.json is missing")
        return None
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        problems.append(f"manifest.json is not valid JSON: {exc}")
        return None
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT
            and manifest.get("version") == FORMAT_VERSION):
        problems.append(f"manifest.json is not a {FORMAT} manifest of version {FORMAT_VERSION}")
        return None
    return manifest


def _compare(manifest: dict, members: dict[str, tuple[int, str]], report: VerifyReport) -> None:
    try:
        expected = _expected_members(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"manifest.json is malformed: {exc!r}")
        return
    database = (manifest.get("database") or {}).get("path")
    for name, (size, sha256) in expected.items():
        if name not in members:
            report.problems.append(f"missing from the archive: {name}")
        elif members[name][0] != size:
            report.problems.append(f"size differs: {name} (manifest {size} bytes, archive "
                                   f"{members[name][0]})")
        elif members[name][1] != sha256:
            report.problems.append(f"checksum differs: {name}")
        elif name == database:
            report.database = True
        else:
            report.files += 1
    for name in sorted(members.keys() - expected.keys()):
        report.problems.append(f"not in the manifest: {name}")


def _expected_members(manifest: dict) -> dict[str, tuple[int, str]]:
    entries = list(manifest["files"])
    if manifest.get("database") is not None:
        entries.append(manifest["database"])
    expected = {}
    for entry in entries:
        name, size, sha256 = entry["path"], entry["size"], entry["sha256"]
        if not (isinstance(name, str) and isinstance(size, int) and isinstance(sha256, str)):
            raise TypeError(f"entry {entry!r} needs a text path, an integer size and a checksum")
        if name in expected:
            raise ValueError(f"{name} is listed twice")
        expected[name] = (size, sha256)
    return expected

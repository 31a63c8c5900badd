"""The backup archive engine (SPEC §2.6): a website's files and a database dump streamed into one
.tar.gz with a manifest of every checksum, read back byte for byte, and every kind of damage
named by `verify_archive`."""

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import traceback
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from backups.archive import ArchiveError, clean_partials, verify_archive, write_archive
from backups.archive import writing as archive_writing
from backups.archive.layout import PARTIAL_NAME

# ~3.5 MB, several chunks; fixed, so that the damage tests hit the same places on every run.
BIG = random.Random(7).randbytes(2_500_000) + b"text that compresses " * 50_000
FILES = {
    "index.html": b"<h1>Welcome</h1>\n",
    "empty.txt": b"",
    "css/site.css": b"body { color: #333 }\n" * 100,
    "a/b/c/d/deep.txt": b"deep\n",
    "media/big.bin": BIG,
    "café/menü.txt": "crème brûlée\n".encode(),
    "日本語/ファイル.txt": "こんにちは\n".encode(),
    "emoji 🚀/launch plan.md": b"# T-10\n",
}


@pytest.fixture
def site(tmp_path) -> Path:
    """A website's files, plus what must not be archived: a symlink to a file outside the tree,
    a symlink to a folder outside it and a fifo (which would block a naive reader)."""
    top = tmp_path / "site"
    for relative, content in FILES.items():
        (top / relative).parent.mkdir(parents=True, exist_ok=True)
        (top / relative).write_bytes(content)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"SENTINEL-outside-the-tree")
    (top / "link-to-secret").symlink_to(outside / "secret.txt")
    (top / "css" / "link-to-folder").symlink_to(outside, target_is_directory=True)
    os.mkfifo(top / "a" / "pipe")
    return top


@pytest.fixture
def live_database(tmp_path):
    """The site's SQLite database in WAL mode, open, with a write in progress (not committed)
    while the backup runs."""
    path = tmp_path / "site.sqlite3"
    with closing(sqlite3.connect(path)) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        setup.executemany("INSERT INTO orders (item) VALUES (?)",
                          [(f"order {n} ü",) for n in range(500)])
        setup.commit()
    site = sqlite3.connect(path, isolation_level=None)
    site.execute("BEGIN")
    site.execute("INSERT INTO orders (item) VALUES ('not committed yet')")
    yield path
    site.execute("ROLLBACK")
    site.close()


def archive(tmp_path: Path, site: Path | None, database: Path | None, **options):
    destination = tmp_path / "out" / "example.org-1.tar.gz"
    destination.parent.mkdir(exist_ok=True)
    return write_archive(website="example.org", files_dir=site, destination=destination,
                         database_url=f"sqlite:///{database}" if database else None, **options)


def extract(path: Path, into: Path) -> Path:
    with tarfile.open(path, "r:gz") as tar:
        tar.extractall(into, filter="data")
    return into


def rows(database: Path) -> list[tuple]:
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute("SELECT id, item FROM orders ORDER BY id").fetchall()


def test_round_trip_reproduces_every_file_and_the_database(tmp_path, site, live_database):
    result = archive(tmp_path, site, live_database)

    report = verify_archive(result.path)
    assert report.ok, report.problems
    assert (report.files, report.database) == (len(FILES), True)
    restored = extract(result.path, tmp_path / "restored")
    archived = {str(path.relative_to(restored / "files")): path.read_bytes()
                for path in (restored / "files").rglob("*") if path.is_file()}
    assert archived == FILES
    assert rows(restored / "database" / "database.sqlite3") == [
        (n + 1, f"order {n} ü") for n in range(500)]
    assert b"SENTINEL-outside-the-tree" not in gzip.decompress(result.path.read_bytes())


def test_a_name_that_is_not_utf8_round_trips(tmp_path):
    """Sites moved from old servers keep Latin-1 names; they are bytes, kept as bytes."""
    site = tmp_path / "site"
    site.mkdir()
    legacy = os.path.join(os.fsencode(site), b"r\xe9sum\xe9.txt")
    with open(legacy, "wb") as file:
        file.write(b"CV")

    result = archive(tmp_path, site, None)

    assert verify_archive(result.path).files == 1
    restored = extract(result.path, tmp_path / "restored")
    assert os.listdir(os.fsencode(restored / "files")) == [b"r\xe9sum\xe9.txt"]


def test_the_result_describes_the_archive_as_written(tmp_path, site, live_database):
    result = archive(tmp_path, site, live_database)

    data = result.path.read_bytes()
    assert (result.size, result.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert result.files == len(FILES)
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600  # it holds the site's data
    assert list(result.path.parent.iterdir()) == [result.path]  # no temporary left
    assert result.manifest["files_bytes"] == sum(map(len, FILES.values()))


def test_the_manifest_lists_every_member_with_size_and_checksum(tmp_path, site, live_database):
    result = archive(tmp_path, site, live_database)

    with tarfile.open(result.path, "r:gz") as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
        dump = tar.extractfile("database/database.sqlite3").read()
    assert names[-1] == "manifest.json"
    assert {entry["path"]: (entry["size"], entry["sha256"]) for entry in manifest["files"]} == {
        f"files/{relative}": (len(content), hashlib.sha256(content).hexdigest())
        for relative, content in FILES.items()}
    assert len(manifest["files"]) == len(FILES)
    assert manifest["database"] == {"path": "database/database.sqlite3", "engine": "sqlite",
                                    "size": len(dump), "sha256": hashlib.sha256(dump).hexdigest()}
    assert (manifest["format"], manifest["version"], manifest["website"]) == (
        "breakglass-backup", 1, "example.org")
    assert manifest["created_at"].endswith("Z") and len(manifest["created_at"]) == 20


def test_symlinks_and_special_files_are_listed_as_skipped_not_followed(tmp_path, site):
    result = archive(tmp_path, site, None)

    skipped = {entry["path"]: entry["reason"] for entry in result.manifest["skipped"]}
    assert skipped == {
        "files/a/pipe": "not a regular file",
        "files/css/link-to-folder": f"symlink to {tmp_path / 'outside'}, not followed",
        "files/link-to-secret": f"symlink to {tmp_path / 'outside' / 'secret.txt'}, not followed",
    }
    with tarfile.open(result.path, "r:gz") as tar:
        assert not [name for name in tar.getnames() if "link" in name or "pipe" in name]


def test_files_are_archived_in_name_order_folder_by_folder(tmp_path, site):
    """The same tree gives the same archive layout, whatever order the filesystem lists."""
    result = archive(tmp_path, site, None)

    with tarfile.open(result.path, "r:gz") as tar:
        assert tar.getnames() == [
            "files/empty.txt", "files/index.html", "files/a/b/c/d/deep.txt",
            "files/café/menü.txt", "files/css/site.css", "files/emoji 🚀/launch plan.md",
            "files/media/big.bin", "files/日本語/ファイル.txt", "manifest.json"]


def test_a_files_only_or_database_only_backup(tmp_path, site, live_database):
    files_only = archive(tmp_path, site, None)
    assert verify_archive(files_only.path).ok
    assert (files_only.manifest["database"], files_only.files) == (None, len(FILES))
    files_only.path.unlink()

    database_only = archive(tmp_path, None, live_database)
    report = verify_archive(database_only.path)
    assert report.ok and report.database and report.files == 0


def test_the_sqlite_copy_is_consistent_while_the_site_writes(tmp_path):
    """Orders are written in pairs, each pair in one transaction, as fast as possible during
    the backup: the copy must hold whole pairs only and pass SQLite's integrity check."""
    path = tmp_path / "busy.sqlite3"
    with closing(sqlite3.connect(path)) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        setup.executemany("INSERT INTO orders (item) VALUES (?)",
                          [("x" * 1000,)] * 20_000)  # ~20 MB, so the copy takes a while
        setup.commit()
    stop, pairs = threading.Event(), [0]

    def write_pairs():
        with closing(sqlite3.connect(path, timeout=30)) as site:
            while not stop.is_set():
                with site:
                    site.execute("INSERT INTO orders (item) VALUES ('pair')")
                    site.execute("INSERT INTO orders (item) VALUES ('pair')")
                pairs[0] += 1

    writer = threading.Thread(target=write_pairs)
    writer.start()
    try:
        result = archive(tmp_path, None, path)
    finally:
        stop.set()
        writer.join()

    copy = extract(result.path, tmp_path / "restored") / "database" / "database.sqlite3"
    with closing(sqlite3.connect(copy)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        copied = connection.execute("SELECT count(*) FROM orders WHERE item = 'pair'").fetchone()
    assert copied[0] % 2 == 0
    assert pairs[0] > 0, "the site did not write during the backup"


def test_progress_walks_the_phases_with_totals_from_a_pre_walk(tmp_path, site, live_database):
    calls = []

    result = archive(tmp_path, site, live_database, progress=lambda *call: calls.append(call))

    phases = [phase for phase, _, _ in calls]
    assert phases[0] == "files" and phases[-1] == "finishing"
    assert phases.index("database") > phases.index("files")
    assert sorted(phases, key=["files", "database", "finishing"].index) == phases
    done = [done for _, done, _ in calls]
    assert done == sorted(done)
    assert calls[0][2] == sum(map(len, FILES.values())) + live_database.stat().st_size
    assert calls[-1][1] == calls[-1][2] >= result.manifest["files_bytes"]
    assert len(calls) <= 8  # a few per second at most, here well under a second


def test_many_progress_calls_are_throttled(tmp_path, site, monkeypatch):
    calls = []
    monkeypatch.setattr(archive_writing, "PROGRESS_INTERVAL", 3600)

    archive(tmp_path, site, None, progress=lambda *call: calls.append(call))

    assert [phase for phase, _, _ in calls] == ["files", "finishing", "finishing"]


def test_a_file_that_shrinks_while_read_is_padded_and_flagged(tmp_path, site, monkeypatch):
    """The header already promised the size: like GNU tar, the member is zero-filled, the
    manifest says so, and the archive itself stays consistent."""
    monkeypatch.setattr(archive_writing, "PROGRESS_INTERVAL", 0)
    big = site / "media" / "big.bin"

    def shrink_the_big_file(phase, done, total):
        if phase == "files" and done >= 1 << 20 and big.stat().st_size == len(BIG):
            os.truncate(big, 1_500_000)

    result = archive(tmp_path, site, None, progress=shrink_the_big_file)

    report = verify_archive(result.path)
    assert report.ok, report.problems
    entry = next(entry for entry in report.manifest["files"] if entry["path"].endswith("big.bin"))
    assert entry["changed"] is True and entry["size"] == len(BIG)
    restored = extract(result.path, tmp_path / "restored") / "files" / "media" / "big.bin"
    assert restored.read_bytes() == BIG[:1_500_000] + bytes(len(BIG) - 1_500_000)
    assert not [entry for entry in report.manifest["files"]
                if entry.get("changed") and not entry["path"].endswith("big.bin")]


def test_a_file_deleted_during_the_backup_is_listed_as_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(archive_writing, "PROGRESS_INTERVAL", 0)
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.txt").write_bytes(b"kept")
    (site / "b-cache.txt").write_bytes(b"purged by the site while the backup runs")

    def purge_the_cache(phase, done, total):
        if done:  # a.txt was read; b-cache.txt was listed with it
            (site / "b-cache.txt").unlink(missing_ok=True)

    result = archive(tmp_path, site, None, progress=purge_the_cache)

    assert result.manifest["skipped"] == [
        {"path": "files/b-cache.txt", "reason": "No such file or directory"}]
    assert verify_archive(result.path).files == 1


def run_unprivileged(function) -> None:
    """Root reads everything: as root, run `function` in a forked child as nobody."""
    if os.geteuid() != 0:
        function()
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            function()
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_unreadable_files_and_folders_are_listed_as_skipped():
    scratch = Path(tempfile.mkdtemp())  # not tmp_path: nobody must reach it
    try:
        if os.geteuid() == 0:
            os.chown(scratch, 65534, 65534)
        top = scratch / "site"
        (top / "locked").mkdir(parents=True)
        (top / "readable.txt").write_bytes(b"public")
        (top / "private.txt").write_bytes(b"SENTINEL-private")
        (top / "locked" / "inside.txt").write_bytes(b"SENTINEL-inside")
        os.chmod(top / "private.txt", 0)
        os.chmod(top / "locked", 0)
        destination = scratch / "example.org.tar.gz"

        run_unprivileged(lambda: write_archive(website="example.org", files_dir=top,
                                               database_url=None, destination=destination))

        report = verify_archive(destination)
        assert report.ok and report.files == 1
        assert report.manifest["skipped"] == [
            {"path": "files/private.txt", "reason": "Permission denied"},
            {"path": "files/locked/", "reason": "Permission denied"},
        ]
    finally:
        os.chmod(scratch / "site" / "locked", 0o700)
        shutil.rmtree(scratch)


@pytest.mark.parametrize(("problem", "setup"), [
    ("nothing to back up", lambda tmp: {"files_dir": None, "database_url": None}),
    ("does not exist", lambda tmp: {"files_dir": tmp / "nowhere", "database_url": None}),
    ("does not exist", lambda tmp: {"files_dir": None,
                                    "database_url": f"sqlite:///{tmp}/missing.sqlite3"}),
    ("unsupported database URL scheme 'oracle'",
     lambda tmp: {"files_dir": None, "database_url": "oracle://root:pw@localhost/site"}),
    ("a MariaDB/MySQL database URL takes no parameters",
     lambda tmp: {"files_dir": None, "database_url": "mysql://u:pw@h/site?ssl=1"}),
    ("unsupported database URL parameter 'service'",
     lambda tmp: {"files_dir": None, "database_url": "postgres://u@h/site?service=other"}),
])
def test_a_backup_that_cannot_be_made_is_refused_and_leaves_nothing(tmp_path, problem, setup):
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(ArchiveError, match=problem):
        write_archive(website="example.org", destination=out / "site.tar.gz", **setup(tmp_path))

    assert list(out.iterdir()) == []


def test_an_existing_archive_is_never_replaced(tmp_path, site):
    first = archive(tmp_path, site, None)
    before = first.path.read_bytes()

    with pytest.raises(ArchiveError, match="already exists"):
        archive(tmp_path, site, None)

    assert first.path.read_bytes() == before


def test_pg_dump_gets_its_settings_and_password_from_the_environment_only(tmp_path,
                                                                         monkeypatch):
    """A stand-in pg_dump on PATH (the edge of the process) records what it was given."""
    bin_dir, seen = tmp_path / "bin", tmp_path / "seen.json"
    bin_dir.mkdir()
    (bin_dir / "pg_dump").write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv, 'env': {{k: v for k, v in os.environ.items() "
        f"if k.startswith('PG')}}}}, open({str(seen)!r}, 'w'))\n"
        "target = next(a for a in sys.argv if a.startswith('--file='))[7:]\n"
        "open(target, 'wb').write(b'PGDMP stand-in dump')\n")
    (bin_dir / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PGSERVICE", "inherited-service-must-not-apply")
    url = "postgres://site%20owner:p%40ss%3Aw%2Frd-SENTINEL@db.example:6543/shop?sslmode=require"

    result = write_archive(website="example.org", files_dir=None, database_url=url,
                           destination=tmp_path / "site.tar.gz")

    given = json.loads(seen.read_text())
    assert "SENTINEL" not in " ".join(given["argv"])
    assert given["argv"][1:3] == ["--format=custom", "--no-password"]
    # Breakglass's own libpq files (~/.pgpass, client certificates) point nowhere.
    given_settings = {key: value for key, value in given["env"].items()
                      if value != os.path.join(os.devnull, "none")}
    assert given_settings == {"PGHOST": "db.example", "PGPORT": "6543", "PGUSER": "site owner",
                            "PGPASSWORD": "p@ss:w/rd-SENTINEL", "PGDATABASE": "shop",
                            "PGSSLMODE": "require"}
    with tarfile.open(result.path, "r:gz") as tar:
        assert tar.extractfile("database/database.pg_dump").read() == b"PGDMP stand-in dump"
    assert verify_archive(result.path).database


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump (postgresql-client)")
def test_a_failed_pg_dump_is_reported_without_the_password(tmp_path):
    url = "postgresql://site:SENTINEL-password@127.0.0.1:9/shop?connect_timeout=2"

    with pytest.raises(ArchiveError, match="pg_dump failed") as refusal:
        write_archive(website="example.org", files_dir=None, database_url=url,
                      destination=tmp_path / "site.tar.gz")

    assert "SENTINEL" not in str(refusal.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_postgresql_database_round_trips_through_pg_dump(tmp_path):
    from django.db import connection

    if shutil.which("pg_restore") is None:
        pytest.skip("needs pg_dump and pg_restore (postgresql-client)")
    user, password, host, name = (quote(connection.settings_dict[key] or default, safe="")
                                  for key, default in (("USER", ""), ("PASSWORD", ""),
                                                       ("HOST", "localhost"), ("NAME", "")))
    url = f"postgresql://{user}:{password}@{host}:{connection.settings_dict['PORT'] or 5432}/{name}"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE backup_probe (id int PRIMARY KEY, note text)")
        cursor.execute("INSERT INTO backup_probe SELECT n, 'note ü ' || n "
                       "FROM generate_series(1, 300) AS n")
    try:
        result = write_archive(website="example.org", files_dir=None, database_url=url,
                               destination=tmp_path / "site.tar.gz")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE backup_probe")

    assert verify_archive(result.path).database
    dump = extract(result.path, tmp_path / "restored") / "database" / "database.pg_dump"
    restored = subprocess.run(["pg_restore", "--data-only", "--table=backup_probe", "-f", "-",
                               str(dump)], capture_output=True, text=True, check=True).stdout
    copied = [line for line in restored.splitlines() if "\tnote ü " in line]
    assert copied == [f"{n}\tnote ü {n}" for n in range(1, 301)]


# --- Tampering ---------------------------------------------------------------------------------


@pytest.fixture
def sound_archive(tmp_path, site, live_database) -> Path:
    return archive(tmp_path, site, live_database).path


def rewrite(path: Path, change) -> None:
    """Re-packs the archive after `change(members)` edits the list of (TarInfo, bytes)."""
    with tarfile.open(path, "r:gz") as tar:
        members = [(member, tar.extractfile(member).read()) for member in tar]
    change(members)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def edit_manifest(edit):
    def change(members):
        info, data = members[-1]
        manifest = json.loads(data)
        edit(manifest)
        members[-1] = (info, json.dumps(manifest).encode())

    return change


def flip_byte_in(name: str):
    def change(members):
        index = next(i for i, (info, _) in enumerate(members) if info.name == name)
        data = bytearray(members[index][1])
        data[len(data) // 2] ^= 0x01
        members[index] = (members[index][0], bytes(data))

    return change


def add_member(name: str, data: bytes):
    def change(members):
        members.insert(len(members) - 1, (tarfile.TarInfo(name), data))

    return change


def remove_member(name: str):
    def change(members):
        members[:] = [(info, data) for info, data in members if info.name != name]

    return change


BIG_NAME = "files/media/big.bin"


@pytest.mark.parametrize(("change", "problems"), [
    (flip_byte_in(BIG_NAME), [f"checksum differs: {BIG_NAME}"]),
    (flip_byte_in("database/database.sqlite3"),
     ["checksum differs: database/database.sqlite3"]),
    (add_member("files/backdoor.php", b"<?php system($_GET['c']);"),
     ["not in the manifest: files/backdoor.php"]),
    (remove_member("files/index.html"), ["missing from the archive: files/index.html"]),
    (edit_manifest(lambda m: m["files"][0].update(sha256="0" * 64)),
     ["checksum differs: files/empty.txt"]),
    (edit_manifest(lambda m: m["files"][0].update(size=5)),
     ["size differs: files/empty.txt (manifest 5 bytes, archive 0)"]),
    (edit_manifest(lambda m: m["files"].append(m["files"][0])),
     ["manifest.json is malformed: ValueError('files/empty.txt is listed twice')"]),
    (edit_manifest(lambda m: m.update(version=99)),
     ["manifest.json is not a breakglass-backup manifest of version 1"]),
    (remove_member("manifest.json"), ["manifest.json is missing"]),
    (add_member("../../etc/cron.d/evil", b"* * * * * root sh"),
     ["unsafe member name: ../../etc/cron.d/evil"]),
    (add_member("files/index.html", b"second copy"), ["duplicate member: files/index.html"]),
])
def test_tampering_is_named(sound_archive, change, problems):
    rewrite(sound_archive, change)

    report = verify_archive(sound_archive)

    assert (report.ok, report.problems) == (False, problems)


def test_a_manifest_that_is_not_json_is_named(sound_archive):
    def garble(members):
        members[-1] = (members[-1][0], b'{"format": "breakglass-backup", "files": [')

    rewrite(sound_archive, garble)

    report = verify_archive(sound_archive)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("manifest.json is not valid JSON")


@pytest.mark.parametrize("keep", [0, 10, 1000, 0.5, 0.99])
def test_a_truncated_archive_is_damaged_not_an_exception(sound_archive, keep):
    data = sound_archive.read_bytes()
    sound_archive.write_bytes(data[:int(keep * len(data)) if isinstance(keep, float) else keep])

    report = verify_archive(sound_archive)

    assert not report.ok
    assert report.problems[0].startswith("the archive is damaged or truncated")
    assert report.sha256 == hashlib.sha256(sound_archive.read_bytes()).hexdigest()


def test_a_flipped_byte_in_the_compressed_stream_is_caught(sound_archive):
    """Wherever it lands, the damage is named (the deflate stream, gzip's CRC or a member's
    checksum), never raised."""
    data = bytearray(sound_archive.read_bytes())
    for offset in range(1000, len(data) - 100, len(data) // 40):
        damaged = data.copy()
        damaged[offset] ^= 0x10
        sound_archive.write_bytes(bytes(damaged))

        report = verify_archive(sound_archive)

        assert not report.ok and report.problems, offset


def test_a_member_hidden_after_the_end_of_the_tar_is_named(sound_archive):
    """`tar -i` would extract it."""
    raw = gzip.decompress(sound_archive.read_bytes())
    end = len(raw.rstrip(b"\0"))
    end += -end % 512  # the end of the manifest's last block
    smuggled = tarfile.TarInfo("files/smuggled.txt")
    smuggled.size = 4
    tail = smuggled.tobuf(tarfile.PAX_FORMAT) + b"evil".ljust(512, b"\0")
    sound_archive.write_bytes(gzip.compress(raw[:end] + bytes(1024) + tail + bytes(1024)))

    report = verify_archive(sound_archive)

    assert report.problems == ["not in the manifest: files/smuggled.txt"]


def test_a_missing_archive_is_a_problem_too(tmp_path):
    report = verify_archive(tmp_path / "nowhere.tar.gz")

    assert (report.ok, report.problems) == (False, ["cannot read the archive: No such file or "
                                                    "directory"])


def test_partial_names_are_recognised():
    assert PARTIAL_NAME.search("site.tar.gz.partial-0123456789abcdef")
    assert PARTIAL_NAME.search("site.tar.gz.partial-0123456789abcdef.database-journal")
    assert not PARTIAL_NAME.search("site.partial-report.tar.gz")


def test_clean_partials_ignores_complete_archives(tmp_path, site):
    result = archive(tmp_path, site, None)

    assert clean_partials(result.path.parent, older_than=timedelta(0)) == []
    assert result.path.exists()


def test_a_damaged_gzip_trailer_is_caught(sound_archive):
    data = bytearray(sound_archive.read_bytes())
    data[-8] ^= 0x01  # the CRC-32 of everything uncompressed

    sound_archive.write_bytes(bytes(data))

    [problem] = verify_archive(sound_archive).problems
    assert problem.startswith("the archive is damaged or truncated: CRC check failed")

"""`manage.py restore_backup ARCHIVE --files-to DIR [--database-url URL] [--force]` (SPEC §2.6):
the new manager restores a verified archive. Nothing is touched unless the archive verifies, every
name in it is safe and the targets are free; after that, a file under its own name is always
complete (each is written under a temporary name, checked against the manifest, then renamed).
Exit codes: 0 restored, 2 archive not valid or not safe, 3 target not usable, 4 database not
restorable."""

import errno
import hashlib
import io
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.archive import ArchiveResult, restoring, verify_archive, write_archive
from backups.archive.restoring import ArchiveRefused, TargetRefused, restore_archive
from tests.backups.test_archive import FILES, add_member, edit_manifest, flip_byte_in, rewrite, rows

ROOT = Path(__file__).resolve().parents[2]
ORDERS = [(n + 1, f"order {n} ü") for n in range(500)]
PG_URL = "postgres://site%20owner:p%40ss:w%2Frd-SENTINEL@db.example:6543/shop?sslmode=require"


@pytest.fixture
def site(tmp_path) -> Path:
    top = tmp_path / "site"
    for relative, content in FILES.items():
        (top / relative).parent.mkdir(parents=True, exist_ok=True)
        (top / relative).write_bytes(content)
    return top


def make_database(path: Path, orders: list[tuple]) -> Path:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        connection.executemany("INSERT INTO orders VALUES (?, ?)", orders)
        connection.commit()
    return path


@pytest.fixture
def made(tmp_path, site) -> ArchiveResult:
    database = make_database(tmp_path / "site.sqlite3", ORDERS)
    return write_archive(website="example.org", files_dir=site,
                         database_url=f"sqlite:///{database}",
                         destination=tmp_path / "example.org-3.tar.gz")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    refusal: str = ""


def restore_backup(*arguments: str) -> Run:
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command("restore_backup", *arguments, stdout=stdout, stderr=stderr)
    except CommandError as refusal:
        return Run(refusal.returncode, stdout.getvalue(), stderr.getvalue(), str(refusal))
    return Run(0, stdout.getvalue(), stderr.getvalue())


def tree(top: Path) -> dict[str, bytes]:
    """Every regular file under `top` (temporaries included), never through a symlink."""
    found = {}
    for folder, _, names in os.walk(top):
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(top))] = path.read_bytes()
    return found


# --- Round trips -------------------------------------------------------------------------------


def test_files_and_an_sqlite_database_round_trip_byte_for_byte(tmp_path, made):
    target = tmp_path / "new" / "site.sqlite3"
    target.parent.mkdir()

    report = restore_archive(made.path, files_to=tmp_path / "restored",
                             database_url=f"sqlite:///{target}")

    # Nested folders, an empty file, spaces, accents, CJK and emoji in names; no temporary left.
    assert tree(tmp_path / "restored") == FILES
    assert rows(target) == ORDERS
    assert os.listdir(target.parent) == ["site.sqlite3"]
    assert (report.files, report.files_planned, report.bytes) == (
        len(FILES), len(FILES), sum(map(len, FILES.values())))
    assert report.database == f"sqlite restored into {target}"
    assert (report.sha256, report.website) == (made.sha256, "example.org")


def test_the_command_prints_what_it_restored(tmp_path, made):
    target = tmp_path / "site.restored.sqlite3"

    run = restore_backup(str(made.path), "--files-to", str(tmp_path / "restored"),
                         "--database-url", f"sqlite:///{target}")

    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.splitlines() == [
        f"Archive SHA-256: {made.sha256}",
        f"Website example.org, made {made.manifest['created_at']}",
        f"Files: {len(FILES)} of {len(FILES)} restored ({made.manifest['files_bytes']} bytes) "
        f"into {tmp_path / 'restored'}",
        f"Database: sqlite restored into {target}",
        "backup restored",
    ]


def test_modes_and_times_are_kept_but_never_setuid_or_writable_by_others(tmp_path, made):
    def set_modes(members):
        for info, _ in members:
            info.mode = {"files/index.html": 0o6777, "files/empty.txt": 0o600}.get(info.name,
                                                                                  0o640)
            info.mtime = 1_700_000_000

    rewrite(made.path, set_modes)

    restore_archive(made.path, files_to=tmp_path / "restored")

    restored = tmp_path / "restored"
    assert oct((restored / "index.html").stat().st_mode) == oct(0o100755)
    assert oct((restored / "empty.txt").stat().st_mode) == oct(0o100600)
    assert oct((restored / "css" / "site.css").stat().st_mode) == oct(0o100640)
    assert (restored / "css" / "site.css").stat().st_mtime == 1_700_000_000


def test_without_a_database_url_the_files_are_restored_and_the_database_way_is_shown(tmp_path,
                                                                                    made):
    run = restore_backup(str(made.path), "--files-to", str(tmp_path / "restored"))

    assert run.returncode == 0
    assert tree(tmp_path / "restored") == FILES
    assert "Database: sqlite NOT restored (no --database-url): run again with --database-url " \
           "and --force, or extract database/database.sqlite3 from the archive and copy it " \
           "into place" in run.stdout.splitlines()


def test_a_files_only_archive_says_it_holds_no_database(tmp_path, site):
    made = write_archive(website="example.org", files_dir=site, database_url=None,
                         destination=tmp_path / "files-only.tar.gz")

    report = restore_archive(made.path, files_to=tmp_path / "restored",
                             database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}")

    assert report.database == "none in the archive (--database-url not used)"
    assert not (tmp_path / "unused.sqlite3").exists()


# --- Refusals before anything is touched -------------------------------------------------------


def assert_nothing_touched(tmp_path: Path, run: Run, returncode: int) -> None:
    assert run.returncode == returncode, run
    assert not (tmp_path / "restored").exists()
    assert not list(tmp_path.glob("*.restored.sqlite3*"))
    assert "Files:" not in run.stdout


def restore_into_tmp(tmp_path: Path, made: ArchiveResult, *options: str) -> Run:
    return restore_backup(str(made.path), "--files-to", str(tmp_path / "restored"),
                          "--database-url", f"sqlite:///{tmp_path / 'site.restored.sqlite3'}",
                          *options)


def test_a_tampered_archive_is_refused_naming_its_problems(tmp_path, made):
    rewrite(made.path, flip_byte_in("files/index.html"))

    run = restore_into_tmp(tmp_path, made, "--force")

    assert_nothing_touched(tmp_path, run, 2)
    assert run.stderr == "problem: checksum differs: files/index.html\n"
    assert run.refusal == ("backup NOT restored: the archive is not valid: 1 problem(s); nothing "
                           "was written")


def special(name: str, kind: bytes, linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return lambda members: members.insert(len(members) - 1, (info, b""))


@pytest.mark.parametrize(("change", "problem"), [
    (add_member("../../etc/cron.d/evil", b"* * * * * root sh"),
     "unsafe member name: ../../etc/cron.d/evil"),
    (add_member("files/../../../etc/passwd", b"root::0:0::/:/bin/sh"),
     "unsafe member name: files/../../../etc/passwd"),
    (add_member("/etc/cron.d/evil", b"* * * * * root sh"), "unsafe member name: /etc/cron.d/evil"),
    (special("files/link", tarfile.SYMTYPE, "/etc/passwd"),
     "unexpected member that is not a regular file: files/link"),
    (special("files/hard", tarfile.LNKTYPE, "/etc/passwd"),
     "unexpected member that is not a regular file: files/hard"),
    (special("files/tty", tarfile.CHRTYPE), "unexpected member that is not a regular file: "
                                           "files/tty"),
])
def test_unsafe_members_are_refused(tmp_path, made, change, problem):
    rewrite(made.path, change)

    run = restore_into_tmp(tmp_path, made)

    assert_nothing_touched(tmp_path, run, 2)
    assert f"problem: {problem}" in run.stderr.splitlines()


def listed(name: str, data: bytes):
    """A member the manifest lists with its right checksum: the verifier finds it sound."""
    def change(members):
        add_member(name, data)(members)
        edit_manifest(lambda manifest: manifest["files"].append(
            {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))(
            members)

    return change


@pytest.mark.parametrize(("name", "problem"), [
    ("etc/cron.d/evil", "unsafe member name: etc/cron.d/evil"),
    ("files//etc/passwd", "unsafe member name: files//etc/passwd"),
    ("files/./x", "unsafe member name: files/./x"),
    ("files/", "unsafe member name: files/"),
    ("files/index.html/inside", "both a file and a folder: files/index.html"),
])
def test_names_the_verifier_accepts_but_restoring_would_misuse_are_refused(tmp_path, made,
                                                                          name, problem):
    rewrite(made.path, listed(name, b"planted"))
    assert verify_archive(made.path).ok

    run = restore_into_tmp(tmp_path, made)

    assert_nothing_touched(tmp_path, run, 2)
    assert run.stderr == f"problem: {problem}\n"
    assert run.refusal.startswith("backup NOT restored: the archive is not safe to restore")


def test_a_folder_that_is_not_empty_is_refused_without_force(tmp_path, made):
    (tmp_path / "restored").mkdir()
    (tmp_path / "restored" / "index.html").write_bytes(b"the new site")

    run = restore_into_tmp(tmp_path, made)

    assert run.returncode == 3
    assert run.refusal == (f"backup NOT restored: {tmp_path / 'restored'} is not empty (--force "
                           "writes over the files in it)")
    assert tree(tmp_path / "restored") == {"index.html": b"the new site"}
    assert not (tmp_path / "site.restored.sqlite3").exists()


def test_force_writes_over_the_archived_files_and_keeps_the_others(tmp_path, made):
    (tmp_path / "restored" / "css").mkdir(parents=True)
    (tmp_path / "restored" / "index.html").write_bytes(b"the new site")
    (tmp_path / "restored" / "css" / "extra.css").write_bytes(b"kept")

    assert restore_into_tmp(tmp_path, made, "--force").returncode == 0

    assert tree(tmp_path / "restored") == FILES | {"css/extra.css": b"kept"}


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_folder_that_is_a_symlink_is_refused_even_with_force(tmp_path, made, force):
    (tmp_path / "real").mkdir()
    (tmp_path / "restored").symlink_to(tmp_path / "real")

    run = restore_into_tmp(tmp_path, made, *force)

    assert run.returncode == 3
    assert run.refusal == (f"backup NOT restored: {tmp_path / 'restored'} is a symlink: name the "
                           "real folder")
    assert list((tmp_path / "real").iterdir()) == []


def test_a_folder_that_is_a_file_is_refused(tmp_path, made):
    (tmp_path / "restored").write_bytes(b"not a folder")

    run = restore_into_tmp(tmp_path, made, "--force")

    assert (run.returncode, run.refusal) == (3, f"backup NOT restored: {tmp_path / 'restored'} "
                                                "is not a folder")


@pytest.mark.parametrize(("in_the_way", "problem"), [
    ("css", "is a symlink or a file, where the archive has a folder: remove it first"),
    ("index.html", "is a folder, where the archive has a file: remove it first"),
])
def test_force_never_writes_through_a_symlink_or_over_a_folder(tmp_path, made, in_the_way,
                                                               problem):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "restored").mkdir()
    if in_the_way == "css":
        (tmp_path / "restored" / "css").symlink_to(outside, target_is_directory=True)
    else:
        (tmp_path / "restored" / "index.html").mkdir()

    run = restore_into_tmp(tmp_path, made, "--force")

    assert run.returncode == 3
    assert run.refusal == f"backup NOT restored: {tmp_path / 'restored' / in_the_way} {problem}"
    assert tree(tmp_path / "restored") == {}
    assert list(outside.iterdir()) == []


def test_a_symlink_where_a_file_goes_is_replaced_not_written_through(tmp_path, made):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the folder")
    (tmp_path / "restored").mkdir()
    (tmp_path / "restored" / "index.html").symlink_to(secret)

    assert restore_into_tmp(tmp_path, made, "--force").returncode == 0

    assert not (tmp_path / "restored" / "index.html").is_symlink()
    assert tree(tmp_path / "restored") == FILES
    assert secret.read_bytes() == b"outside the folder"


def test_a_symlink_planted_during_the_restore_is_not_followed(tmp_path, made, monkeypatch):
    """The checks before writing are backed by descriptors: a folder swapped for a symlink
    between the check and the write is refused, never written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    real_open = restoring._Folders.open

    def plant_a_symlink_first(folders, names):
        if names == ["css"] and not os.path.lexists(tmp_path / "restored" / "css"):
            (tmp_path / "restored" / "css").symlink_to(outside, target_is_directory=True)
        return real_open(folders, names)

    monkeypatch.setattr(restoring._Folders, "open", plant_a_symlink_first)

    with pytest.raises(TargetRefused, match="css is not a folder"):
        restore_archive(made.path, files_to=tmp_path / "restored")

    assert list(outside.iterdir()) == []


def test_an_existing_sqlite_database_is_kept_without_force_and_replaced_with_it(tmp_path, made):
    target = make_database(tmp_path / "site.restored.sqlite3", [(1, "the new site's order")])
    stale_journal = Path(f"{target}-wal")
    stale_journal.write_bytes(b"would be replayed into the restored database")

    run = restore_into_tmp(tmp_path, made)

    assert (run.returncode, run.refusal) == (3, f"backup NOT restored: {target} already exists "
                                                "(--force replaces the database)")
    assert not (tmp_path / "restored").exists()
    assert rows(target) == [(1, "the new site's order")]

    assert restore_into_tmp(tmp_path, made, "--force").returncode == 0
    assert rows(target) == ORDERS
    assert not stale_journal.exists()


def test_a_database_engine_this_command_cannot_restore_is_named(tmp_path, made):
    rewrite(made.path, edit_manifest(lambda manifest: manifest["database"].update(
        engine="oracle")))

    run = restore_backup(str(made.path), "--files-to", str(tmp_path / "restored"),
                         "--database-url", "mysql://site:pw@db.example/shop")

    assert_nothing_touched(tmp_path, run, 4)
    assert run.refusal == (
        "backup NOT restored: the archive's database (oracle) cannot be restored by this "
        "command, which restores SQLite, PostgreSQL and MariaDB/MySQL: extract "
        "database/database.sqlite3 from the archive and load it with that database's own tools")


def test_a_database_url_of_another_engine_is_refused(tmp_path, made):
    run = restore_backup(str(made.path), "--files-to", str(tmp_path / "restored"),
                         "--database-url", PG_URL)

    assert_nothing_touched(tmp_path, run, 4)
    assert run.refusal == ("backup NOT restored: the archive holds a sqlite database, which a "
                           "postgres:// --database-url cannot receive")


# --- PostgreSQL, through stand-ins for its tools (the edge of the process) ----------------------

STAND_IN = """#!{python}
import json, os, sys
folder, tool = os.path.dirname(os.path.abspath(__file__)), os.path.basename(sys.argv[0])
if tool == "pg_dump":
    dump = next(a for a in sys.argv if a.startswith("--file="))[7:]
    open(dump, "wb").write(open(os.path.join(folder, "dump"), "rb").read())
    sys.exit(0)
dump = sys.argv[-1] if tool == "pg_restore" else (
    sys.argv[sys.argv.index("--file") + 1] if "--file" in sys.argv else None)
with open(os.path.join(folder, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"tool": tool, "argv": sys.argv[1:],
                           "env": {{k: v for k, v in os.environ.items() if k.startswith("PG")}},
                           "dump": open(dump, "rb").read().decode() if dump else None}}) + "\\n")
if "-c" in sys.argv:
    print(open(os.path.join(folder, "relations")).read())
elif os.path.exists(os.path.join(folder, "fail")):
    sys.stderr.write("pg_restore: while PROCESSING TOC:\\npg_restore: error: could not connect: "
                     "password " + os.environ.get("PGPASSWORD", "") + " refused\\n")
    sys.exit(1)
"""


@dataclass
class StandIns:
    folder: Path

    def calls(self) -> list[dict]:
        log = self.folder / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def postgres_tools(tmp_path, monkeypatch) -> StandIns:
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("pg_dump", "pg_restore", "psql"):
        (folder / tool).write_text(STAND_IN.format(python=sys.executable))
        (folder / tool).chmod(0o755)
    (folder / "dump").write_bytes(b"PGDMP stand-in dump")
    (folder / "relations").write_text("0")
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    return StandIns(folder)


def postgres_archive(tmp_path: Path, site: Path) -> ArchiveResult:
    return write_archive(website="example.org", files_dir=site, database_url=PG_URL,
                         destination=tmp_path / "example.org-pg.tar.gz")


def restore_postgres(tmp_path: Path, made: ArchiveResult, *options: str) -> Run:
    return restore_backup(str(made.path), "--files-to", str(tmp_path / "restored"),
                          "--database-url", PG_URL, *options)


def test_pg_restore_gets_the_password_from_the_environment_only(tmp_path, site, postgres_tools):
    made = postgres_archive(tmp_path, site)

    run = restore_postgres(tmp_path, made)

    assert run.returncode == 0, run
    check, load = postgres_tools.calls()
    assert check["tool"] == "psql" and check["argv"][-2] == "-c"
    assert load["tool"] == "pg_restore"
    assert load["argv"] == ["--no-password", "--no-owner", "--no-privileges", "--exit-on-error",
                            "--single-transaction", "--dbname=dbname='shop'",
                            load["argv"][-1]]
    assert load["dump"] == "PGDMP stand-in dump"
    for call in (check, load):
        assert "SENTINEL" not in " ".join(call["argv"])
        assert (call["env"]["PGPASSWORD"], call["env"]["PGUSER"], call["env"]["PGHOST"]) == (
            "p@ss:w/rd-SENTINEL", "site owner", "db.example")
    assert "Database: postgresql restored into " \
           "postgres://site%20owner@db.example:6543/shop?sslmode=require" in run.stdout
    assert "SENTINEL" not in run.stdout + run.stderr
    assert tree(tmp_path / "restored") == FILES
    assert list((tmp_path / "scratch").iterdir()) == []  # the unpacked dump is gone


def test_a_plain_sql_dump_is_loaded_with_psql(tmp_path, site, postgres_tools):
    (postgres_tools.folder / "dump").write_bytes(b"CREATE TABLE orders (id int);\n")
    made = postgres_archive(tmp_path, site)

    assert restore_postgres(tmp_path, made).returncode == 0

    load = postgres_tools.calls()[-1]
    assert (load["tool"], load["dump"]) == ("psql", "CREATE TABLE orders (id int);\n")
    assert {"--single-transaction", "ON_ERROR_STOP=1"} <= set(load["argv"])


def test_a_database_that_is_not_empty_is_refused_without_force(tmp_path, site, postgres_tools):
    made = postgres_archive(tmp_path, site)
    (postgres_tools.folder / "relations").write_text("12")

    run = restore_postgres(tmp_path, made)

    assert_nothing_touched(tmp_path, run, 3)
    assert run.refusal == (
        "backup NOT restored: the database postgres://site%20owner@db.example:6543/shop?"
        "sslmode=require is not empty (12 tables, sequences or views; --force restores over "
        "them)")
    assert [call["tool"] for call in postgres_tools.calls()] == ["psql"]

    assert restore_postgres(tmp_path, made, "--force").returncode == 0
    assert {"--clean", "--if-exists"} <= set(postgres_tools.calls()[-1]["argv"])


def test_a_missing_pg_restore_is_named_in_one_line(tmp_path, site, postgres_tools):
    made = postgres_archive(tmp_path, site)
    (postgres_tools.folder / "pg_restore").unlink()

    run = restore_postgres(tmp_path, made)

    assert_nothing_touched(tmp_path, run, 4)
    assert run.refusal == ("backup NOT restored: pg_restore is not installed (apt-get install "
                           "postgresql-client)")


def test_a_failed_pg_restore_keeps_the_files_and_says_the_database_was_not(tmp_path, site,
                                                                          postgres_tools):
    made = postgres_archive(tmp_path, site)
    (postgres_tools.folder / "fail").touch()

    run = restore_postgres(tmp_path, made)

    reason = ("pg_restore failed (exit 1): pg_restore: error: could not connect: password *** "
              "refused")
    assert run.returncode == 4
    assert run.refusal == f"backup NOT restored: {reason}"
    assert run.stdout.splitlines()[2:] == [
        f"Files: {len(FILES)} of {len(FILES)} restored ({made.manifest['files_bytes']} bytes) "
        f"into {tmp_path / 'restored'}",
        f"Database: postgresql NOT restored: {reason}"]
    assert tree(tmp_path / "restored") == FILES
    assert "SENTINEL" not in run.stdout + run.stderr + run.refusal
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_postgresql_database_round_trips_through_pg_restore(tmp_path):
    import psycopg
    from django.db import connection

    settings = connection.settings_dict
    server = {"user": settings["USER"] or "", "password": settings["PASSWORD"] or "",
              "host": settings["HOST"] or "localhost", "port": str(settings["PORT"] or 5432)}

    def url(name: str) -> str:
        return (f"postgresql://{quote(server['user'], safe='')}:"
                f"{quote(server['password'], safe='')}@{server['host']}:{server['port']}/{name}")

    def orders(name: str) -> list[tuple]:
        with psycopg.connect(dbname=name, **server) as site:
            return site.execute("SELECT id, item FROM orders ORDER BY id").fetchall()

    source, target = (f"restore_{role}_{os.getpid()}" for role in ("source", "target"))
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{source}"')
        cursor.execute(f'CREATE DATABASE "{target}"')
    try:
        with psycopg.connect(dbname=source, **server) as site:
            site.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
            site.execute("INSERT INTO orders SELECT n, 'order ü ' || n "
                         "FROM generate_series(1, 300) AS n")
        made = write_archive(website="example.org", files_dir=None, database_url=url(source),
                             destination=tmp_path / "site.tar.gz")

        report = restore_archive(made.path, files_to=tmp_path / "restored",
                                 database_url=url(target))

        assert orders(target) == [(n, f"order ü {n}") for n in range(1, 301)]
        assert report.database.startswith("postgresql restored into postgresql://")
        # Shown without its password (which may well equal the user name, as in CI).
        assert report.database == (f"postgresql restored into postgresql://"
                                   f"{server['user']}@{server['host']}:{server['port']}/{target}")
        with pytest.raises(TargetRefused, match="is not empty"):
            restore_archive(made.path, files_to=tmp_path / "again", database_url=url(target))
        restore_archive(made.path, files_to=tmp_path / "again", database_url=url(target),
                        force=True)
        assert orders(target) == orders(source)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')
            cursor.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


# --- Nothing half-written ----------------------------------------------------------------------
# The rule: a file under its own name is complete and matches the manifest. A failed restore
# removes its temporary; one killed outright may leave `.restoring-<token>` files, never a partial
# file under a final name. The files restored before a failure stay, and the output counts them.


def test_a_failure_mid_file_leaves_the_files_before_it_complete_and_no_partial(tmp_path, made,
                                                                             monkeypatch):
    copies, real_copy = [], restoring._copy_checked

    def disk_full_in_the_third_file(source, target, name, expected):
        copies.append(name)
        if len(copies) == 3:
            target.write(source.read(expected[0] // 2 or 1))
            raise OSError(errno.ENOSPC, "No space left on device")
        real_copy(source, target, name, expected)

    monkeypatch.setattr(restoring, "_copy_checked", disk_full_in_the_third_file)

    run = restore_into_tmp(tmp_path, made)

    third = tmp_path / "restored" / copies[2].removeprefix("files/")
    assert run.returncode == 3
    assert run.refusal == f"backup NOT restored: {third} cannot be written: No space left on device"
    restored = tree(tmp_path / "restored")
    assert restored == {name.removeprefix("files/"): FILES[name.removeprefix("files/")]
                        for name in copies[:2]}
    assert f"Files: 2 of {len(FILES)} restored" in run.stdout
    assert "Database: sqlite NOT restored: the restore stopped before it" in run.stdout
    assert not list(tmp_path.glob("site.restored.sqlite3*"))


def test_a_file_that_differs_from_the_manifest_as_it_is_written_is_not_kept(tmp_path, made,
                                                                           monkeypatch):
    """Defence in depth: were the verifier to miss a change, the restore's own check holds."""
    real_verify = restoring.verify_archive

    def a_verifier_that_missed_a_change(path):
        report = real_verify(path)
        entry = next(e for e in report.manifest["files"] if e["path"] == "files/css/site.css")
        entry["sha256"] = hashlib.sha256(b"what the archive held when it was made").hexdigest()
        return report

    monkeypatch.setattr(restoring, "verify_archive", a_verifier_that_missed_a_change)

    with pytest.raises(ArchiveRefused) as refusal:
        restore_archive(made.path, files_to=tmp_path / "restored")

    assert str(refusal.value) == ("the archive changed since it was verified: files/css/site.css "
                                  "differs from the manifest")
    restored = tree(tmp_path / "restored")
    assert "css/site.css" not in restored
    assert restored == {name: FILES[name] for name in restored}  # no temporary, all complete
    assert refusal.value.report.files == len(restored) > 0


def test_an_archive_changed_while_it_was_verified_is_refused_untouched(tmp_path, made,
                                                                      monkeypatch):
    real_verify = restoring.verify_archive

    def verify_then_change(path):
        report = real_verify(path)
        rewrite(path, add_member("files/backdoor.php", b"<?php"))
        return report

    monkeypatch.setattr(restoring, "verify_archive", verify_then_change)

    run = restore_into_tmp(tmp_path, made)

    assert_nothing_touched(tmp_path, run, 2)
    assert run.refusal == ("backup NOT restored: the archive changed while it was verified; "
                           "nothing was written")


WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from backups.archive.restoring import restore_archive
restore_archive(Path(sys.argv[2]), files_to=Path(sys.argv[3]), database_url=sys.argv[4])
"""


def start_worker(made: ArchiveResult, folder: Path, **options) -> subprocess.Popen:
    options.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT), str(made.path),
                             str(folder / "files"), f"sqlite:///{folder / 'site.sqlite3'}"],
                            text=True, **options)


def start_writing(made: ArchiveResult, folder: Path) -> tuple[subprocess.Popen, float]:
    """Starts a restore and returns once it begins to write (after the verification)."""
    worker = start_worker(made, folder)
    while not (folder / "files").exists() and worker.poll() is None:
        time.sleep(0.001)
    return worker, time.monotonic()


def test_a_restore_killed_at_any_moment_leaves_only_complete_files_under_their_names(tmp_path,
                                                                                   made):
    (tmp_path / "timing").mkdir()
    worker, started = start_writing(made, tmp_path / "timing")
    assert worker.wait() == 0
    writing = time.monotonic() - started
    seed = random.randrange(1 << 32)
    rng, partial = random.Random(seed), 0
    for attempt in range(12):
        folder = tmp_path / f"attempt-{attempt}"
        folder.mkdir()
        worker, _ = start_writing(made, folder)
        time.sleep(writing * (attempt + rng.random()) / 12)
        worker.kill()
        worker.wait()

        found = tree(folder)
        context = f"seed {seed}, attempt {attempt}: {sorted(found)}"
        finished = {name: data for name, data in found.items() if ".restoring-" not in name}
        for name, data in finished.items():
            if name == "site.sqlite3":
                assert rows(folder / name) == ORDERS, context
            else:
                assert data == FILES[name.removeprefix("files/")], context
        partial += len(found) > len(finished)
    # The kills are spread over the measured writing time; at least one must have caught a
    # file half-written, or the property above was not exercised (timing varies on CI).
    assert partial >= 1, f"seed {seed}: no attempt was killed while writing"


def limit_file_size_to_one_megabyte() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a dead process
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_full_disk_stops_the_restore_without_a_partial_file(tmp_path, made):
    folder = tmp_path / "full"
    folder.mkdir()
    with start_worker(made, folder, stderr=subprocess.PIPE,
                      preexec_fn=limit_file_size_to_one_megabyte) as worker:
        failure = worker.stderr.read()

    assert worker.returncode == 1
    big = folder / "files" / "media" / "big.bin"
    assert f"TargetRefused: {big} cannot be written: File too large" in failure
    restored = tree(folder / "files")
    assert "media/big.bin" not in restored
    assert restored == {name: FILES[name] for name in restored}


def run_in_a_fresh_process(made: ArchiveResult, *options: str) -> subprocess.CompletedProcess:
    # What the new manager has: a copy of the archive and the code, no server configuration
    # and no database.
    env = {name: value for name, value in os.environ.items()
           if name not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "FIELD_ENCRYPTION_KEY"}}
    env.update(ENVIRONMENT="development",
               DATABASE_URL="postgres://nobody:nothing@127.0.0.1:9/no_such_database")
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), "restore_backup",
                           str(made.path), "--files-to", "restored", *options],
                          cwd=made.path.parent, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_real_process_restores_without_a_database_and_exits_by_the_outcome(made):
    restored = run_in_a_fresh_process(made)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.splitlines()[-1] == "backup restored"

    refused = run_in_a_fresh_process(made)
    assert refused.returncode == 3
    assert refused.stderr.splitlines()[-1] == (
        "CommandError: backup NOT restored: restored is not empty (--force writes over the files "
        "in it)")

    made.path.write_bytes(made.path.read_bytes()[:-100])
    damaged = run_in_a_fresh_process(made, "--force")
    assert damaged.returncode == 2
    assert "problem: the archive is damaged or truncated" in damaged.stderr

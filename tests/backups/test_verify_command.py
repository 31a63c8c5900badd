"""`manage.py verify_backup ARCHIVE` (SPEC §2.6): the new manager checks an archive before
restoring it, on any machine, with no database. Exit 0 only when every checksum matches."""

import io
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.archive import ArchiveResult, write_archive
from tests.backups.test_archive import add_member, edit_manifest, flip_byte_in, rewrite

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def made(tmp_path) -> ArchiveResult:
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>Welcome</h1>")
    (site / "css" / "site.css").write_text("body { color: #333 }")
    (site / "robots.txt").write_text("User-agent: *")
    (site / "current").symlink_to("/srv/releases/42")
    database = tmp_path / "site.sqlite3"
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE t (x)")
        connection.commit()
    return write_archive(website="example.org", files_dir=site,
                         database_url=f"sqlite:///{database}",
                         destination=tmp_path / "example.org-7.tar.gz")


@dataclass
class Run:
    stdout: str
    stderr: str
    refusal: str = ""


def verify_backup(*arguments: str) -> Run:
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command("verify_backup", *arguments, stdout=stdout, stderr=stderr)
    except CommandError as refusal:
        return Run(stdout.getvalue(), stderr.getvalue(), str(refusal))
    return Run(stdout.getvalue(), stderr.getvalue())


def test_a_sound_archive_is_verified_with_its_summary(made):
    run = verify_backup(str(made.path))

    assert (run.refusal, run.stderr) == ("", "")
    assert run.stdout.splitlines() == [
        f"Archive SHA-256: {made.sha256}",
        f"Website example.org, made {made.manifest['created_at']}",
        f"Files: 3 ({made.manifest['files_bytes']} bytes); database: sqlite",
        "  not in the backup: files/current (symlink to /srv/releases/42, not followed)",
        "backup verified: 3 files and the database dump match the manifest",
    ]


def test_the_recorded_checksum_is_checked_too(made):
    assert verify_backup(str(made.path), "--sha256", made.sha256.upper()).refusal == ""

    run = verify_backup(str(made.path), "--sha256", "0" * 64)

    assert run.refusal == f"backup NOT verified: 1 problem(s) in {made.path}"
    assert run.stderr == (f"problem: the archive's SHA-256 is {made.sha256}, not the recorded "
                          f"{'0' * 64}\n")


def test_a_tampered_archive_is_refused_naming_every_problem(made):
    def tamper(members):
        flip_byte_in("files/index.html")(members)
        add_member("files/backdoor.php", b"<?php")(members)

    rewrite(made.path, tamper)

    run = verify_backup(str(made.path))

    assert run.refusal == f"backup NOT verified: 2 problem(s) in {made.path}"
    assert run.stderr.splitlines() == ["problem: checksum differs: files/index.html",
                                       "problem: not in the manifest: files/backdoor.php"]
    assert "backup verified" not in run.stdout


def test_files_that_changed_while_read_are_warned_about(made):
    rewrite(made.path, edit_manifest(lambda manifest: manifest["files"][0].update(changed=True)))

    run = verify_backup(str(made.path))

    assert run.refusal == ""
    assert "  warning: files/index.html: changed while it was read" in run.stdout.splitlines()


def test_a_manifest_edited_into_nonsense_is_refused_without_a_crash(made):
    rewrite(made.path, edit_manifest(lambda manifest: manifest.update(files=7, skipped="x")))

    run = verify_backup(str(made.path))

    assert run.refusal == f"backup NOT verified: 1 problem(s) in {made.path}"
    assert run.stderr.startswith("problem: manifest.json is malformed: TypeError(")


def test_a_missing_archive_is_refused(tmp_path):
    run = verify_backup(str(tmp_path / "nowhere.tar.gz"))

    assert run.stderr == "problem: cannot read the archive: No such file or directory\n"
    assert run.refusal.startswith("backup NOT verified: 1 problem(s)")


def run_in_a_fresh_process(archive: Path) -> subprocess.CompletedProcess:
    # What the new manager has: a copy of the archive and the code, no server configuration
    # and no database.
    env = {name: value for name, value in os.environ.items()
           if name not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "FIELD_ENCRYPTION_KEY"}}
    env.update(ENVIRONMENT="development",
               DATABASE_URL="postgres://nobody:nothing@127.0.0.1:9/no_such_database")
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), "verify_backup",
                           str(archive)], cwd=archive.parent, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_real_process_verifies_without_a_database_and_exits_by_the_outcome(made):
    sound = run_in_a_fresh_process(made.path)
    assert sound.returncode == 0, sound.stderr
    assert sound.stdout.splitlines()[-1] == (
        "backup verified: 3 files and the database dump match the manifest")

    made.path.write_bytes(made.path.read_bytes()[:-100])
    damaged = run_in_a_fresh_process(made.path)

    assert damaged.returncode == 1
    assert damaged.stderr.splitlines()[-1] == (
        f"CommandError: backup NOT verified: 2 problem(s) in {made.path}")
    assert "backup verified" not in damaged.stdout
    assert "problem: the archive is damaged or truncated" in damaged.stderr

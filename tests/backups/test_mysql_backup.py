"""MariaDB/MySQL websites against a real mariadbd on 127.0.0.1: a WordPress-shaped site is
archived with mariadb-dump and restored with the mariadb client into a fresh database, every
file byte for byte and every row the same; the password never reaches a command line; a wrong
password, a missing dump tool and a non-empty target are refused in one plain sentence with
nothing left behind."""

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backups.archive import ArchiveError, verify_archive, write_archive
from backups.archive.mysql import describe_version, parse_mysql_url
from backups.archive.restoring import DatabaseNotRestored, TargetRefused, restore_archive
from tests.backups.wordpress_site import SITE_PASSWORD, database_fingerprint, file_checksums

ROOT = Path(__file__).resolve().parents[2]


def archive_of(site, tmp_path: Path):
    return write_archive(website="bakkerij.example", files_dir=site.files,
                         database_url=site.database_url,
                         destination=tmp_path / "bakkerij.tar.gz")


def url_of(site, database: str) -> str:
    return site.database_url.rsplit("/", 1)[0] + f"/{database}"


def test_a_wordpress_site_round_trips_through_mariadb_dump_and_the_client(
        wordpress, fresh_database, mariadb_server, tmp_path):
    original = database_fingerprint(mariadb_server, wordpress.database)

    result = archive_of(wordpress, tmp_path)

    report = verify_archive(result.path)
    assert report.ok, report.problems
    assert result.manifest["database"]["path"] == "database/database.sql"
    assert result.manifest["database"]["engine"] == "mysql"
    restored = restore_archive(result.path, files_to=tmp_path / "restored",
                               database_url=url_of(wordpress, fresh_database))
    assert restored.database.startswith("mysql restored into mysql://")
    assert SITE_PASSWORD not in restored.database
    assert file_checksums(tmp_path / "restored") == file_checksums(wordpress.files)
    assert database_fingerprint(mariadb_server, fresh_database) == original
    assert original["wp_posts"][1] == 40
    assert original["triggers"] == ["wp_count_comment"]
    assert original["routines"] == ["wp_published"]


def test_a_restore_into_a_database_that_is_not_empty_is_refused_unless_forced(
        wordpress, fresh_database, mariadb_server, tmp_path):
    result = archive_of(wordpress, tmp_path)
    mariadb_server.execute("CREATE TABLE wp_posts (ID int)", database=fresh_database)

    with pytest.raises(TargetRefused, match=r"is not empty \(1 tables, views, routines or "
                                            r"events; --force restores over them\)"):
        restore_archive(result.path, files_to=tmp_path / "restored",
                        database_url=url_of(wordpress, fresh_database))
    assert not (tmp_path / "restored").exists()

    restore_archive(result.path, files_to=tmp_path / "restored",
                    database_url=url_of(wordpress, fresh_database), force=True)
    assert (database_fingerprint(mariadb_server, fresh_database)
            == database_fingerprint(mariadb_server, wordpress.database))


def test_a_wrong_password_fails_the_backup_in_one_line_without_the_password(
        wordpress, tmp_path):
    wrong = wordpress.database_url.replace("%23", "%24", 1)  # '#' → '$' in the password
    assert wrong != wordpress.database_url

    with pytest.raises(ArchiveError) as failed:
        write_archive(website="bakkerij.example", files_dir=wordpress.files,
                      database_url=wrong, destination=tmp_path / "bakkerij.tar.gz")

    message = str(failed.value)
    assert message.startswith("mariadb-dump ")
    assert "failed (exit 2)" in message and "Access denied for user" in message
    assert "\n" not in message and "pa$$" not in message
    assert sorted(path.name for path in tmp_path.iterdir()) == ["site"]


def test_a_wrong_password_at_restore_names_the_tool_and_touches_nothing(
        wordpress, fresh_database, tmp_path):
    result = archive_of(wordpress, tmp_path)
    wrong = url_of(wordpress, fresh_database).replace("%23", "%24", 1)

    with pytest.raises(DatabaseNotRestored, match=r"^mariadb .*Access denied for user"):
        restore_archive(result.path, files_to=tmp_path / "restored", database_url=wrong)
    assert not (tmp_path / "restored").exists()


def test_the_password_travels_in_a_private_option_file_never_on_the_command_line(
        wordpress, tmp_path, monkeypatch):
    """A stand-in dump tool, first on PATH, records what it was given."""
    record = tmp_path / "seen"
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "mariadb-dump"
    fake.write_text(f"""#!/bin/sh
[ "$1" = --version ] && {{ echo "mariadb-dump from 11.4.2-MariaDB, client 10.19"; exit 0; }}
options="${{1#--defaults-file=}}"
{{ echo "$@"; stat -c %a "$options" "$(dirname "$options")"; cat "$options"; }} > {record}
echo "-- dump"
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")

    result = archive_of(wordpress, tmp_path)

    command, file_mode, folder_mode, *option_file = record.read_text().splitlines()
    assert SITE_PASSWORD not in command and "pa$$" not in command
    assert command.split()[0].startswith("--defaults-file=/")
    assert "--single-transaction --routines --triggers --events" in command
    assert command.endswith(f"-- {wordpress.database}")
    assert (file_mode, folder_mode) == ("600", "700")
    assert option_file[0] == "[client]"
    assert 'password="wp pa$$ \\"word\\" #1 \\\\ \'x\'"' in option_file
    assert not Path(command.split()[0].removeprefix("--defaults-file=")).exists()
    assert result.manifest["database"]["size"] == len("-- dump\n")


def test_without_a_dump_tool_the_backup_says_what_to_install(wordpress, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(ArchiveError, match=r"^neither mariadb-dump nor mysqldump is installed "
                                           r"\(apt-get install mariadb-client\)$"):
        archive_of(wordpress, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bin", "site"]


def test_the_dump_is_owner_only_in_the_archive(wordpress, tmp_path):
    import tarfile

    result = archive_of(wordpress, tmp_path)

    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    with tarfile.open(result.path) as tar:
        assert tar.getmember("database/database.sql").mode == 0o600


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://user:pw@/shop", "must name its server's host"),
    ("mysql://:pw@db.example/shop", "names no user"),
    ("mysql://user:pw@db.example/", "names no database"),
    ("mysql://user:pw@db.example:99999/shop", "invalid port"),
    ("mysql://user:pw@db.example/shop?ssl=1", "takes no parameters"),
    ("mysql://user:p%0Aw@db.example/shop", "line break"),
])
def test_database_urls_that_cannot_be_dumped_are_refused_plainly(url, message):
    with pytest.raises(ArchiveError, match=message):
        parse_mysql_url(url)


def test_a_url_names_its_parts_percent_decoded_and_never_shows_the_password():
    server = parse_mysql_url("mariadb://wp%40site:p%3Aw%2F@db.example/wp%2Dshop")

    assert (server.user, server.password, server.host, server.port, server.name) == (
        "wp@site", "p:w/", "db.example", 3306, "wp-shop")
    assert "p:w/" not in repr(server) and "p:w/" not in server.shown


@pytest.mark.parametrize(("output", "described"), [
    ("mariadb-dump from 11.4.2-MariaDB, client 10.19 for debian-linux-gnu (x86_64)\n",
     "mariadb-dump 11.4.2-MariaDB"),
    ("mysqldump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n",
     "mysqldump 10.19 (10.11.19-MariaDB)"),
    ("mysqldump  Ver 8.4.3 for Linux on x86_64 (MySQL Community Server - GPL)\n",
     "mysqldump 8.4.3"),
    ("", "mysqldump"),
])
def test_the_dump_tool_is_named_with_its_version(output, described):
    assert describe_version("mysqldump" if "mysqldump" in output or not output
                            else "mariadb-dump", output) == described


def test_the_dump_compressed_as_it_was_made_reads_with_the_system_tar(wordpress, tmp_path):
    """The dump is its own gzip member inside the archive's stream: GNU tar and gzip, which a
    new manager may use instead of restore_backup, read the archive whole."""
    result = archive_of(wordpress, tmp_path)
    out = tmp_path / "extracted"
    out.mkdir()

    assert subprocess.run(["gzip", "--test", str(result.path)]).returncode == 0
    subprocess.run(["tar", "-xzf", str(result.path), "-C", str(out)], check=True)

    dump = (out / "database" / "database.sql").read_bytes()
    assert hashlib.sha256(dump).hexdigest() == result.manifest["database"]["sha256"]
    assert len(dump) == result.manifest["database"]["size"]
    assert b"CREATE TABLE `wp_posts`" in dump
    assert file_checksums(out / "files") == file_checksums(wordpress.files)


def test_the_database_url_may_come_from_the_environment_never_the_command_line(
        wordpress, fresh_database, mariadb_server, tmp_path):
    """What the new manager types stays out of `ps`: the URL, password included, is read from
    the variable the command names."""
    result = archive_of(wordpress, tmp_path)
    environment = {**os.environ, "NEW_SITE_DATABASE": url_of(wordpress, fresh_database)}

    def restore(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "restore_backup", str(result.path), "--files-to",
             str(tmp_path / "restored"), *options], cwd=ROOT, capture_output=True, text=True,
            timeout=120, env={**environment, "ENVIRONMENT": "development"})

    unset = restore("--database-url-env", "NO_SUCH_VARIABLE")
    assert unset.returncode == 4
    assert ("backup NOT restored: the environment variable NO_SUCH_VARIABLE is not set or "
            "empty") in unset.stderr
    assert not (tmp_path / "restored").exists()
    both = restore("--database-url", "sqlite:////tmp/x", "--database-url-env", "X")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr

    done = restore("--database-url-env", "NEW_SITE_DATABASE")

    assert done.returncode == 0, done.stdout + done.stderr
    assert SITE_PASSWORD not in done.stdout
    assert (database_fingerprint(mariadb_server, fresh_database)
            == database_fingerprint(mariadb_server, wordpress.database))

"""Websites on another server over SSH, against a real sshd and mariadbd on 127.0.0.1: a
WordPress-shaped site is archived through the remote tar and a remote mariadb-dump and
restored byte for byte and row for row; a changed host key, a dropped connection, a wrong key
and a folder outside the allow-list each stop the backup with one plain sentence and leave
nothing under a final name."""

import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
from pathlib import Path

import pytest
from django.utils import timezone

from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from backups import jobs, sources
from backups.archive import ArchiveError, verify_archive, write_archive
from backups.archive.remote import (
    HostKeyChanged,
    RemoteFailed,
    RemoteSite,
    SshCredentials,
    fetch_host_key,
    host_key_line,
    load_private_key,
    parse_ssh_source,
)
from backups.archive.restoring import restore_archive
from backups.models import BackupJob, Website
from recovery.crypto import encrypt_field
from tests.backups.sshd_server import SshServer
from tests.backups.test_mysql_backup import url_of
from tests.backups.wordpress_site import database_fingerprint, file_checksums
from tests.conftest import example_website, make_user

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def allowed(settings, mariadb_server, tmp_path, request):
    """The test's folder on its sshd, and the MariaDB server, as the operator allows them."""
    server = request.getfixturevalue("own_ssh_server" if "own_ssh_server" in
                                     request.fixturenames else "ssh_server")
    settings.BACKUP_REMOTE_SOURCES = [f"ssh://127.0.0.1:{server.port}{tmp_path}"]
    settings.BACKUP_DATABASE_ALLOW = [str(tmp_path), f"127.0.0.1:{mariadb_server.port}"]
    return sources.current_policy()


def credentials(server: SshServer, *, host_key: str | None = None) -> SshCredentials:
    return SshCredentials(private_key=server.private_key, passphrase="",
                          host_key=server.host_key_line if host_key is None else host_key)


def remote_archive(server, site, tmp_path, **options):
    source = parse_ssh_source(server.url(site.files))
    with RemoteSite(source, credentials(server)) as remote:
        return write_archive(website="bakkerij.example", files_dir=remote.real_folder(),
                             database_url=site.database_url,
                             destination=tmp_path / "out" / "bakkerij.tar.gz", remote=remote,
                             **options)


@pytest.fixture
def out(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def test_a_wordpress_site_behind_sshd_round_trips_file_for_file_and_row_for_row(
        ssh_server, wordpress, fresh_database, mariadb_server, tmp_path, out, allowed):
    os.symlink("/etc/passwd", wordpress.files / "wp-content" / "passwd-link")
    original = database_fingerprint(mariadb_server, wordpress.database)

    result = remote_archive(ssh_server, wordpress, tmp_path)

    assert verify_archive(result.path).ok
    assert result.manifest["database"]["engine"] == "mysql"
    assert result.manifest["skipped"] == [
        {"path": "files/wp-content/passwd-link",
         "reason": "symlink to /etc/passwd, not followed"}]
    restore_archive(result.path, files_to=tmp_path / "restored",
                    database_url=url_of(wordpress, fresh_database))
    (wordpress.files / "wp-content" / "passwd-link").unlink()
    assert file_checksums(tmp_path / "restored") == file_checksums(wordpress.files)
    assert database_fingerprint(mariadb_server, fresh_database) == original


def test_the_manifest_hashes_are_computed_here_in_name_order(ssh_server, wordpress, tmp_path,
                                                              out, allowed):
    result = remote_archive(ssh_server, wordpress, tmp_path)

    with tarfile.open(result.path) as tar:
        names = [name for name in tar.getnames() if name.startswith("files/")]
    assert names == sorted(names, key=lambda name: name.split("/"))
    assert result.files == len(file_checksums(wordpress.files))


def test_a_changed_host_key_stops_the_backup_naming_both_fingerprints(
        own_ssh_server, wordpress, tmp_path, out, allowed):
    pinned = own_ssh_server.host_key_line
    old_fingerprint = fetch_host_key("127.0.0.1", own_ssh_server.port).fingerprint
    own_ssh_server.new_host_key()
    own_ssh_server.restart()
    new_fingerprint = fetch_host_key("127.0.0.1", own_ssh_server.port).fingerprint
    source = parse_ssh_source(own_ssh_server.url(wordpress.files))

    with pytest.raises(HostKeyChanged) as changed:
        RemoteSite(source, credentials(own_ssh_server, host_key=pinned))

    assert str(changed.value) == (
        f"the host key of 127.0.0.1:{own_ssh_server.port} changed: it is now "
        f"{new_fingerprint}, pinned is {old_fingerprint}. The backup stopped; the manager must "
        "check the server and pin its key again")
    assert list(out.iterdir()) == []


def test_a_server_without_a_pinned_key_is_never_contacted(ssh_server, wordpress, out):
    source = parse_ssh_source(ssh_server.url(wordpress.files))

    with pytest.raises(HostKeyChanged, match=r"no host key is pinned for 127\.0\.0\.1:\d+: the "
                                             r"manager pins it on the website's page first"):
        RemoteSite(source, credentials(ssh_server, host_key=""))


def test_a_key_the_server_does_not_accept_is_refused_plainly(ssh_server, wordpress, tmp_path):
    other = tmp_path / "other_key"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")  # noqa: S605
    source = parse_ssh_source(ssh_server.url(wordpress.files))

    with pytest.raises(RemoteFailed, match=rf"^127\.0\.0\.1:{ssh_server.port} refused the SSH "
                                           rf"sign-in as {ssh_server.user}: "):
        RemoteSite(source, SshCredentials(private_key=other.read_text(), passphrase="",
                                          host_key=ssh_server.host_key_line))


def test_a_connection_dropped_halfway_fails_and_leaves_nothing(
        own_ssh_server, wordpress, tmp_path, out, allowed):
    big = wordpress.files / "wp-content" / "uploads" / "video.mp4"
    big.write_bytes(os.urandom(40 << 20))
    dropped = threading.Event()

    def progress(phase, done, total):
        if phase == "files" and done > 4 << 20 and not dropped.is_set():
            dropped.set()
            assert own_ssh_server.drop_connections() > 0

    with pytest.raises(RemoteFailed, match=r"ended early \(the connection dropped\?\)|dropped"):
        remote_archive(own_ssh_server, wordpress, tmp_path, progress=progress)

    assert dropped.is_set()
    assert list(out.iterdir()) == []


def test_a_full_disk_at_the_destination_fails_the_remote_backup_and_leaves_nothing(
        ssh_server, wordpress, tmp_path, out, allowed):
    """In a child process whose files may not grow past 1 MB: the archive cannot be written,
    and neither it nor its temporaries remain."""
    (wordpress.files / "wp-content" / "uploads" / "video.mp4").write_bytes(os.urandom(3 << 20))
    script = textwrap.dedent(f"""
        from pathlib import Path
        from backups.archive import write_archive
        from backups.archive.remote import RemoteSite, SshCredentials, parse_ssh_source
        source = parse_ssh_source({ssh_server.url(wordpress.files)!r})
        credentials = SshCredentials({ssh_server.private_key!r}, "", {ssh_server.host_key_line!r})
        with RemoteSite(source, credentials) as remote:
            write_archive(website="bakkerij.example", files_dir=remote.real_folder(),
                          database_url={wordpress.database_url!r},
                          destination=Path({str(out / "bakkerij.tar.gz")!r}), remote=remote)
    """)
    child = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, preexec_fn=limit_file_size_to_one_megabyte)

    assert child.returncode == 1
    assert "OSError: [Errno 27] File too large" in child.stderr
    assert list(out.iterdir()) == []


def test_a_server_without_a_dump_tool_is_named_with_what_to_install(
        own_ssh_server, wordpress, tmp_path, out, allowed):
    """The server's commands come from a PATH holding everything but the dump tools."""
    tools = tmp_path / "remote-bin"
    tools.mkdir()
    for tool in ("sh", "tar", "realpath", "du", "head", "gzip"):
        (tools / tool).symlink_to(shutil.which(tool))
    own_ssh_server.extra_config = [f"SetEnv PATH={tools}"]
    own_ssh_server.restart()

    with pytest.raises(RemoteFailed, match=r"^neither mariadb-dump nor mysqldump is installed "
                                           rf"on 127\.0\.0\.1:{own_ssh_server.port} "
                                           r"\(apt-get install mariadb-client\)$"):
        remote_archive(own_ssh_server, wordpress, tmp_path)
    assert list(out.iterdir()) == []


def test_a_server_whose_tar_cannot_do_the_job_is_named_with_its_own_words(
        own_ssh_server, wordpress, tmp_path, out, allowed):
    """BusyBox or an old GNU tar refuses --sort=name: its error, not a guess, reaches the
    manager."""
    tools = tmp_path / "remote-bin"
    tools.mkdir()
    for tool in ("sh", "realpath", "du", "head", "mariadb-dump"):
        (tools / tool).symlink_to(shutil.which(tool))
    (tools / "tar").write_text("#!/bin/sh\necho \"tar: unrecognized option '--sort=name'\" >&2\n"
                               "exit 2\n")
    (tools / "tar").chmod(0o755)
    own_ssh_server.extra_config = [f"SetEnv PATH={tools}"]
    own_ssh_server.restart()

    with pytest.raises(RemoteFailed, match=rf"^tar on 127\.0\.0\.1:{own_ssh_server.port} failed "
                                           r"\(exit 2\): tar: unrecognized option "
                                           r"'--sort=name'$"):
        remote_archive(own_ssh_server, wordpress, tmp_path)
    assert list(out.iterdir()) == []


def limit_file_size_to_one_megabyte() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a dead process
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_remote_database_password_that_is_wrong_is_masked_in_the_failure(
        ssh_server, wordpress, tmp_path, out, allowed):
    wordpress.password = wordpress.password.replace("#", "$")

    with pytest.raises(RemoteFailed) as failed:
        remote_archive(ssh_server, wordpress, tmp_path)

    message = str(failed.value)
    assert "on 127.0.0.1:" in message and "Access denied for user" in message
    assert wordpress.password not in message and "pa$$" not in message
    assert list(out.iterdir()) == []


def test_a_folder_that_resolves_outside_the_allowed_ones_is_refused(
        ssh_server, wordpress, tmp_path, settings, allowed):
    settings.BACKUP_REMOTE_SOURCES = [f"ssh://127.0.0.1:{ssh_server.port}{tmp_path}/allowed"]
    (tmp_path / "allowed").mkdir()
    os.symlink(wordpress.files, tmp_path / "allowed" / "site")
    policy = sources.current_policy()
    source = policy.check_ssh_source(ssh_server.url(tmp_path / "allowed" / "site"))

    with RemoteSite(source, credentials(ssh_server)) as remote:
        real = remote.real_folder()
    assert real == str(wordpress.files)
    with pytest.raises(sources.SourceRefused, match=r"is outside the allowed folders "
                                                    r"\(BACKUP_REMOTE_SOURCES\)"):
        policy.check_remote_folder(source, real)


def test_without_allowed_servers_no_ssh_source_is_accepted(settings, ssh_server, tmp_path):
    settings.BACKUP_REMOTE_SOURCES = []

    with pytest.raises(sources.SourceRefused, match="BACKUP_REMOTE_SOURCES"):
        sources.current_policy().check_ssh_source(ssh_server.url(tmp_path))


def test_over_ssh_only_a_mariadb_database_can_be_dumped(ssh_server, wordpress, tmp_path,
                                                        allowed):
    source = parse_ssh_source(ssh_server.url(wordpress.files))

    with pytest.raises(sources.SourceRefused, match="only a MariaDB/MySQL database"):
        allowed.check_remote_database_url(source, f"sqlite:///{tmp_path}/x.sqlite3")


@pytest.mark.parametrize(("url", "message"), [
    ("ssh://host/srv/www", "names its user and host"),
    ("ssh://user:pw@host/srv/www", "takes no password"),
    ("ssh://user@host:0x/srv", "invalid port"),
    ("ssh://user@host", "absolute folder"),
    ("ssh://user@host/srv/../etc", "contains '..'"),
    ("ssh://user@host/srv?x=1", "no parameters"),
    ("sftp://user@host/srv", "ssh://user@host:port/path"),
])
def test_ssh_sources_that_cannot_be_used_are_refused_plainly(url, message):
    with pytest.raises(ArchiveError, match=message):
        parse_ssh_source(url)


def test_an_encrypted_private_key_needs_its_passphrase(tmp_path):
    key = tmp_path / "key"
    os.system(f"ssh-keygen -q -t ed25519 -N 'sesame' -f {key}")  # noqa: S605

    with pytest.raises(ArchiveError, match="encrypted: give its passphrase"):
        load_private_key(key.read_text())
    with pytest.raises(ArchiveError, match="passphrase is wrong"):
        load_private_key(key.read_text(), "wrong")
    assert load_private_key(key.read_text(), "sesame").get_name() == "ssh-ed25519"


def test_the_fetched_host_key_is_the_one_sshd_presents(ssh_server):
    key = fetch_host_key("127.0.0.1", ssh_server.port)

    assert host_key_line(key) == ssh_server.host_key_line
    assert key.fingerprint.startswith("SHA256:")


def remote_website(server: SshServer, site) -> Website:
    return example_website(
        make_user("bob"), files_dir=server.url(site.files),
        database_url_encrypted=encrypt_field(site.database_url),
        ssh_private_key_encrypted=encrypt_field(server.private_key),
        ssh_host_key=server.host_key_line)


@pytest.mark.django_db
def test_a_backup_job_of_a_remote_site_completes_and_verifies(
        ssh_server, wordpress, tmp_path, allowed, settings):
    settings.BACKUP_ROOT = tmp_path / "archives"
    job = BackupJob.objects.create(website=remote_website(ssh_server, wordpress),
                                   created_at=timezone.now())

    assert jobs.run_backup(job.pk) == "complete"

    job.refresh_from_db()
    report = verify_archive(settings.BACKUP_ROOT / job.archive_name)
    assert report.ok and report.database
    assert report.sha256 == job.sha256


@pytest.mark.django_db
def test_a_backup_job_stops_at_a_changed_host_key_without_retrying(
        own_ssh_server, wordpress, tmp_path, allowed, settings):
    settings.BACKUP_ROOT = tmp_path / "archives"
    website = remote_website(own_ssh_server, wordpress)
    own_ssh_server.new_host_key()
    own_ssh_server.restart()
    job = BackupJob.objects.create(website=website, created_at=timezone.now())

    assert jobs.run_backup(job.pk) == "failed"

    job.refresh_from_db()
    assert job.status == BackupJob.Status.FAILED
    assert job.error.startswith(f"the host key of 127.0.0.1:{own_ssh_server.port} changed")
    failed = AuditEvent.objects.get(kind=EventKind.BACKUP_FAILED)
    assert failed.data["retried"] is False
    assert not any(settings.BACKUP_ROOT.rglob("*.tar.gz*"))
    # The owner's contacts hear one plain sentence; the fingerprints go to the manager.
    send_due_deliveries()
    to_owner = [m for m in sms.outbox if m.to == website.verification_mobile]
    assert to_owner and all("SHA256" not in m.body for m in to_owner)
    assert "could not be made" in to_owner[-1].body
    assert "has been told why" in to_owner[-1].body

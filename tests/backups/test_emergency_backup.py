"""The emergency session's one power, end to end (tasks run inline in tests): start a backup,
watch it, download it; the archive verifies and holds the site's files and database."""

import hashlib
import io
import re
import sqlite3
import tarfile
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from backups import jobs
from backups.archive import verify_archive
from backups.archive_store import archive_store
from backups.models import BackupJob, Website
from recovery.crypto import encrypt_field
from tests.conftest import example_website, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def website(tmp_path, settings):
    settings.BACKUP_ROOT = tmp_path / "archives"
    site = tmp_path / "site"
    (site / "blog").mkdir(parents=True)
    (site / "index.html").write_text("<h1>Café</h1>")
    (site / "blog" / "first.md").write_text("# First post\n")
    database = tmp_path / "site.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE posts (title TEXT)")
        connection.execute("INSERT INTO posts VALUES ('Opening hours')")
    connection.close()
    return example_website(make_user("bob"), files_dir=str(site),
                           database_url_encrypted=encrypt_field(f"sqlite:///{database}"))


def open_session(client: Client) -> None:
    sms.outbox.clear()
    client.post(reverse("emergency:start"), {"address": "example.org"})
    send_due_deliveries()
    code = re.search(r"\b(\d{8})\b", sms.outbox[-1].body).group(1)
    assert client.post(reverse("emergency:verify"), {"code": code}).status_code == 302


def test_start_watch_download_and_verify(client, website, tmp_path,
                                        django_capture_on_commit_callbacks):
    open_session(client)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("emergency:start-backup")).status_code == 302
    job = BackupJob.objects.get()
    assert job.status == "complete" and job.size > 0  # the inline worker ran it
    page = client.get(reverse("emergency:session")).content.decode()
    assert job.sha256 in page and "Download backup" in page
    response = client.get(reverse("emergency:download", args=[job.pk]))
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == job.sha256 == response["X-Checksum-SHA256"]
    archive = tmp_path / "download.tar.gz"
    archive.write_bytes(body)
    report = verify_archive(archive)
    assert report.ok, report.problems
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = tar.getnames()
        assert any(name.endswith("blog/first.md") for name in names)
        index = next(name for name in names if name.endswith("index.html"))
        assert tar.extractfile(index).read() == "<h1>Café</h1>".encode()
        copy = tmp_path / "restored.sqlite3"
        copy.write_bytes(tar.extractfile("database/database.sqlite3").read())
    restored = sqlite3.connect(copy)
    assert restored.execute("SELECT title FROM posts").fetchall() == [("Opening hours",)]
    restored.close()
    kinds = set(AuditEvent.objects.values_list("kind", flat=True))
    assert {EventKind.BACKUP_STARTED, EventKind.BACKUP_COMPLETED,
            EventKind.BACKUP_DOWNLOADED} <= kinds


def test_a_second_request_joins_the_running_job(client, website, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)  # no worker yet
    open_session(client)
    client.post(reverse("emergency:start-backup"))
    client.post(reverse("emergency:start-backup"))
    assert BackupJob.objects.count() == 1
    page = client.get(reverse("emergency:session")).content.decode()
    assert 'http-equiv="refresh"' in page and "Queued" in page


def test_another_websites_backup_is_not_found(client, website):
    other = Website.objects.create(name="Other", address="other.org",
                                   manager=website.manager, files_dir=website.files_dir)
    foreign = BackupJob.objects.create(website=other, created_at=timezone.now())
    assert jobs.run_backup(foreign.pk) == "complete"
    open_session(client)
    assert client.get(reverse("emergency:download", args=[foreign.pk])).status_code == 404


def test_a_stale_running_job_is_retried_and_then_fails(website, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    job = BackupJob.objects.create(website=website, status="running", attempts=1,
                                   created_at=timezone.now() - timedelta(minutes=10),
                                   heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert jobs.sweep_stale_jobs() >= 1
    job.refresh_from_db()
    assert job.status == "queued" and "stopped reporting" in job.error
    assert jobs.run_backup(job.pk) == "complete"
    job.refresh_from_db()
    assert job.status == "complete" and job.attempts == 2


def test_archives_are_deleted_after_the_retention(client, website,
                                                  django_capture_on_commit_callbacks):
    open_session(client)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("emergency:start-backup"))
    job = BackupJob.objects.get()
    path = archive_store().path(job.archive_name)
    BackupJob.objects.update(finished_at=timezone.now() - timedelta(days=8))
    assert jobs.delete_expired_archives() == 1
    job.refresh_from_db()
    assert job.status == "deleted"
    import os

    assert not os.path.exists(path)
    assert AuditEvent.objects.filter(kind=EventKind.BACKUP_DELETED).count() == 1

"""Backups on the S3-compatible store every node shares: written as a multipart upload while
the archive is made (nothing visible until complete and checked), downloaded as a stream,
deleted through the store with its answer recorded, and a killed worker's upload aborted."""

import hashlib
import os
import sqlite3
from datetime import timedelta

import pytest
from botocore.config import Config
from django.urls import reverse
from django.utils import timezone

from audit.catalogue import EventKind, Outcome
from audit.models import AuditEvent
from backups import jobs
from backups.archive import verify_archive
from backups.archive_store import archive_store
from backups.models import BackupJob
from recovery.crypto import encrypt_field
from tests.backups.test_emergency_backup import open_session
from tests.conftest import example_website, make_user
from tests.ports import free_port

pytestmark = pytest.mark.django_db

SITE_BYTES = 12 * 1024 * 1024  # three 5 MiB parts at the tests' part size


@pytest.fixture
def website(backup_sources, settings):
    settings.BACKUP_ROOT = backup_sources / "spool"
    site = backup_sources / "site"
    site.mkdir()
    # Random bytes do not compress: the archive needs several parts.
    (site / "photo.jpg").write_bytes(os.urandom(SITE_BYTES))
    (site / "index.html").write_text("<h1>Café</h1>")
    database = backup_sources / "site.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE posts (title TEXT)")
        connection.execute("INSERT INTO posts VALUES ('Opening hours')")
    connection.close()
    return example_website(make_user("bob"), files_dir=str(site),
                           database_url_encrypted=encrypt_field(f"sqlite:///{database}"))


def completed_backup(website) -> BackupJob:
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    assert jobs.run_backup(job.pk) == "complete"
    job.refresh_from_db()
    return job


def test_a_backup_streams_to_the_bucket_and_downloads_from_it(
        client, website, bucket, s3, tmp_path, settings, django_capture_on_commit_callbacks):
    open_session(client)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("emergency:start-backup")).status_code == 302
    job = BackupJob.objects.get()
    assert job.status == "complete", job.error
    assert s3.keys(bucket, "backups/") == [f"backups/{job.archive_name}"]
    assert s3.incomplete_uploads(bucket) == []
    head = s3.client().head_object(Bucket=bucket, Key=f"backups/{job.archive_name}")
    assert head["ContentLength"] == job.size > SITE_BYTES
    # Nothing of the archive stays on the worker's disk: only the store holds it.
    assert [path for path in settings.BACKUP_ROOT.rglob("*") if path.is_file()] == []

    response = client.get(reverse("emergency:download", args=[job.pk]))
    assert response.status_code == 200 and response.streaming
    assert int(response["Content-Length"]) == job.size
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == job.sha256 == response["X-Checksum-SHA256"]
    downloaded = tmp_path / "download.tar.gz"
    downloaded.write_bytes(body)
    report = verify_archive(downloaded)
    assert report.ok, report.problems
    assert report.database and report.files == 2


def test_a_failed_write_leaves_nothing_in_the_bucket(website, bucket, s3, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)

    def broken_progress(job):
        calls = []

        def progress(phase, done, total):
            calls.append(phase)
            if done > 6 * 1024 * 1024:  # after the first part went to the store
                raise OSError("the disk of the dump failed")
        return progress

    monkeypatch.setattr(jobs, "PROGRESS_EVERY_SECONDS", 0)
    monkeypatch.setattr(jobs, "_heartbeat", broken_progress)
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    assert jobs.run_backup(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "queued" and "disk of the dump failed" in job.error
    assert s3.keys(bucket) == [] and s3.incomplete_uploads(bucket) == []


def test_the_sweep_aborts_a_killed_workers_upload_but_not_a_running_one(
        website, bucket, s3, monkeypatch, settings):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    store = archive_store()
    running = BackupJob.objects.create(website=website, status="running", attempts=1,
                                       created_at=timezone.now(), heartbeat_at=timezone.now())
    dead = BackupJob.objects.create(website=website, status="failed", attempts=3,
                                    created_at=timezone.now(), finished_at=timezone.now())
    for job in (running, dead):  # what a worker killed mid-upload leaves
        upload = store.start_upload(f"example.org/example.org-{job.pk}-20261207T120000Z.tar.gz")
        upload.write(b"x" * 1024)
        upload._stop_sender()
    assert len(s3.incomplete_uploads(bucket)) == 2
    jobs.sweep_stale_jobs()
    assert s3.incomplete_uploads(bucket) == [
        f"backups/example.org/example.org-{running.pk}-20261207T120000Z.tar.gz"]


def test_retention_deletes_through_the_store_and_records_its_answer(
        website, bucket, s3, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    kept, expired, vanished = (completed_backup(website) for _ in range(3))
    s3.client().delete_object(Bucket=bucket, Key=f"backups/{vanished.archive_name}")
    old = timezone.now() - timedelta(days=8)
    BackupJob.objects.filter(pk__in=[expired.pk, vanished.pk]).update(finished_at=old)

    assert jobs.delete_expired_archives() == 2
    kept.refresh_from_db()
    assert s3.keys(bucket, "backups/") == [f"backups/{kept.archive_name}"]
    answers = {event.data["job"]: event.data["answer"] for event in
               AuditEvent.objects.filter(kind=EventKind.BACKUP_DELETED)}
    assert answers == {expired.pk: "deleted", vanished.pk: "already absent"}
    assert {event.data["store"] for event in AuditEvent.objects.filter(
        kind=EventKind.BACKUP_DELETED)} == {f"bucket {bucket}/backups"}


def test_a_store_that_cannot_be_reached_keeps_the_archive_recorded(website, bucket, s3,
                                                                    settings, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    job = completed_backup(website)
    BackupJob.objects.update(finished_at=timezone.now() - timedelta(days=8))
    # The store's address now leads nowhere (a port nothing listens on), tried once.
    away = {**settings.STORAGES["backups"]["OPTIONS"],
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "client_config": Config(retries={"max_attempts": 1}, connect_timeout=1)}
    settings.STORAGES = {**settings.STORAGES,
                         "backups": {**settings.STORAGES["backups"], "OPTIONS": away}}
    assert jobs.delete_expired_archives() == 0
    job.refresh_from_db()
    assert job.status == "complete"
    assert s3.keys(bucket, "backups/") == [f"backups/{job.archive_name}"]
    event = AuditEvent.objects.get(kind=EventKind.BACKUP_DELETED)
    assert event.outcome == Outcome.FAILURE and "refused to delete" in event.reason

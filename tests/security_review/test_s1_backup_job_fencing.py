"""Backup jobs that outlive the stale limit: the heartbeat goes on during a long dump, a live
job is never swept, every write of a run is fenced by the attempt that claimed it, and the
backup task carries its own time limit, which the queue's retry exceeds."""

import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf

from audit.catalogue import EventKind
from audit.models import AuditEvent
from backups import jobs
from backups.archive import write_archive
from backups.models import BackupJob, Website
from recovery.crypto import encrypt_field
from tests.conftest import example_website, make_user

DUMP_SECONDS = 4


@pytest.fixture
def slow_pg_dump(tmp_path, monkeypatch):
    """A stand-in pg_dump on PATH (the edge of the process) that takes longer than the stale
    limit, which the test shortens to one second."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pg_dump").write_text(
        f"#!{sys.executable}\nimport sys, time\ntime.sleep({DUMP_SECONDS})\n"
        "target = next(a for a in sys.argv if a.startswith('--file='))[7:]\n"
        "open(target, 'wb').write(b'PGDMP slow stand-in dump')\n")
    (bin_dir / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(jobs, "STALE_AFTER", timedelta(seconds=1))
    monkeypatch.setattr(jobs, "PROGRESS_EVERY_SECONDS", 0.2)
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)


@pytest.fixture
def website(backup_sources, settings):
    settings.BACKUP_ROOT = backup_sources / "archives"
    settings.BACKUP_DATABASE_ALLOW = ["db.example:5432"]
    return example_website(
        make_user("bob"), verification_mobile="",
        database_url_encrypted=encrypt_field("postgres://site:secret@db.example/shop"))


def events(kind: str) -> int:
    return AuditEvent.objects.filter(kind=kind).count()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_dump_longer_than_the_stale_limit_completes_once_and_is_never_swept(
        website, slow_pg_dump):
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    outcome = []

    def worker():
        try:
            outcome.append(jobs.run_backup(job.pk))
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    swept = 0
    while thread.is_alive():
        time.sleep(0.3)
        swept += jobs.sweep_stale_jobs()
    thread.join()
    job.refresh_from_db()
    assert outcome == ["complete"]
    assert (job.status, job.attempts, swept) == (BackupJob.Status.COMPLETE, 1, 0)
    assert events(EventKind.BACKUP_FAILED) == 0
    assert events(EventKind.BACKUP_COMPLETED) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_run_that_lost_its_job_stops_at_its_next_heartbeat_and_leaves_no_archive(
        website, slow_pg_dump, settings):
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    outcome = []

    def worker():
        try:
            outcome.append(jobs.run_backup(job.pk))
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    while not BackupJob.objects.filter(pk=job.pk, status=BackupJob.Status.RUNNING).exists():
        time.sleep(0.05)
    # What the sweep and a second worker do to a run they took for dead: queue, claim again.
    BackupJob.objects.filter(pk=job.pk).update(status=BackupJob.Status.QUEUED)
    assert jobs._claim(job.pk).attempts == 2
    thread.join(timeout=30)
    assert outcome == ["fenced out"]
    job.refresh_from_db()
    assert (job.status, job.attempts, job.archive_name) == (BackupJob.Status.RUNNING, 2, "")
    archives = Path(settings.BACKUP_ROOT)
    assert not [path for path in archives.rglob("*") if path.is_file()]
    assert events(EventKind.BACKUP_COMPLETED) == events(EventKind.BACKUP_FAILED) == 0


@pytest.mark.django_db
def test_a_run_the_sweep_gave_up_on_cannot_complete_or_fail_the_job(website, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    late_run = jobs._claim(job.pk)
    BackupJob.objects.filter(pk=job.pk).update(  # its worker went silent
        heartbeat_at=timezone.now() - timedelta(minutes=10))
    assert jobs.sweep_stale_jobs() == 1
    current_run = jobs._claim(job.pk)
    assert (current_run.attempts, late_run.attempts) == (2, 1)

    name = "example.org/late.tar.gz"
    destination = Path(django_settings.BACKUP_ROOT) / name
    destination.parent.mkdir(parents=True)
    (tmp_path / "site").mkdir()
    result = write_archive(website="example.org", files_dir=tmp_path / "site",
                           database_url=None, destination=destination)
    jobs._complete(late_run, name, result)
    jobs._fail(late_run, "late failure")
    job.refresh_from_db()
    assert (job.status, job.attempts, job.archive_name) == (BackupJob.Status.RUNNING, 2, "")
    assert events(EventKind.BACKUP_COMPLETED) == 0
    assert not AuditEvent.objects.filter(reason="late failure").exists()


def test_backups_carry_their_own_time_limit_which_the_queue_retry_exceeds(monkeypatch):
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task",
                        lambda *args, **options: queued.append((args, options)))
    jobs._enqueue(7)
    assert queued == [(("backups.tasks.run_backup", 7),
                       {"timeout": django_settings.BACKUP_TIMEOUT_MINUTES * 60})]
    assert django_settings.Q_CLUSTER["timeout"] < django_settings.BACKUP_TIMEOUT_MINUTES * 60
    assert Conf.RETRY > django_settings.BACKUP_TIMEOUT_MINUTES * 60


SIZED_FOLDERS = 8
SECONDS_PER_FOLDER = 0.2  # the sizing walk alone lasts longer than the one-second stale limit


@pytest.mark.django_db
def test_sizing_a_big_files_directory_keeps_the_heartbeat_going(backup_sources, settings,
                                                                 monkeypatch):
    """A slow filesystem (each folder listing takes a while) under a sweep that runs at every
    listing: the walk that sizes the tree beats like the rest, so the job is never swept."""
    settings.BACKUP_ROOT = backup_sources / "archives"
    site = backup_sources / "site"
    for number in range(SIZED_FOLDERS):
        (site / f"folder{number}").mkdir(parents=True)
        (site / f"folder{number}" / "page.html").write_text("<p>hello</p>")
    website = Website.objects.create(
        name="Example", address="example.org", manager=make_user("bob"),
        verification_email="owner@example.org", emergency_enabled=True, files_dir=str(site))
    monkeypatch.setattr(jobs, "STALE_AFTER", timedelta(seconds=1))
    monkeypatch.setattr(jobs, "PROGRESS_EVERY_SECONDS", 0.2)
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    swept, real_scandir = [], os.scandir

    def slow_scandir(folder=None):
        if isinstance(folder, int):  # a folder of the site, listed by its descriptor
            time.sleep(SECONDS_PER_FOLDER)
            swept.append(jobs.sweep_stale_jobs())
        return real_scandir(folder)

    monkeypatch.setattr(os, "scandir", slow_scandir)
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    assert jobs.run_backup(job.pk) == "complete"
    job.refresh_from_db()
    assert (job.status, job.attempts) == (BackupJob.Status.COMPLETE, 1)
    assert len(swept) == 2 * (SIZED_FOLDERS + 1) and sum(swept) == 0
    assert events(EventKind.BACKUP_FAILED) == 0

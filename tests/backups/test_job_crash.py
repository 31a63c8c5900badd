"""QUALITY Q33 at the job level, on PostgreSQL: a real worker process running a backup job is
killed at 50 random moments. After every kill, no archive recorded complete fails
verification, nothing but a complete archive carries a final name, and the job is retried."""

import os
import random
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from backups import jobs
from backups.archive import verify_archive
from backups.models import BackupJob, Website
from tests.audit.test_qcluster import database_url
from tests.conftest import make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
KILLS = 50


def worker(job_id: int, backup_root: Path, tmp: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items()
           if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", ENVIRONMENT="test",
               DATABASE_URL=database_url(), BACKUP_ROOT=str(backup_root),
               CHECKPOINT_DIR=str(tmp / "checkpoints"), BACKUP_SOURCE_ROOTS=str(tmp))
    script = ("import django; django.setup(); from backups.jobs import run_backup; "
              f"run_backup({job_id})")
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_worker_killed_at_50_random_points_never_leaves_a_false_archive(tmp_path, settings,
                                                                         monkeypatch):
    backup_root = tmp_path / "archives"
    settings.BACKUP_ROOT = backup_root
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)  # this test is the worker
    site = tmp_path / "site"
    rng = random.Random(7)
    for folder in range(8):
        (site / f"d{folder}").mkdir(parents=True)
        for number in range(40):
            (site / f"d{folder}" / f"f{number}.txt").write_bytes(rng.randbytes(20_000))
    website = Website.objects.create(name="Example", address="example.org",
                                     manager=make_user("bob"), files_dir=str(site))
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    retried = 0
    for _ in range(KILLS):
        if job.status in {BackupJob.Status.COMPLETE, BackupJob.Status.FAILED}:
            job = BackupJob.objects.create(website=website, created_at=timezone.now())
        process = worker(job.pk, backup_root, tmp_path)
        try:
            process.wait(timeout=rng.uniform(0.2, 2.5))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        for complete in BackupJob.objects.filter(status=BackupJob.Status.COMPLETE):
            report = verify_archive(backup_root / complete.archive_name)
            assert report.ok, (complete.pk, report.problems)
        for final in backup_root.rglob("*.tar.gz"):
            assert verify_archive(final).ok, final  # a final name only ever holds a whole one
        job.refresh_from_db()
        if job.status == BackupJob.Status.RUNNING:
            # The sweep treats a silent worker as dead and queues the job again.
            BackupJob.objects.filter(pk=job.pk).update(
                heartbeat_at=timezone.now() - timedelta(minutes=5))
            jobs.sweep_stale_jobs()
            job.refresh_from_db()
            assert job.status in {BackupJob.Status.QUEUED, BackupJob.Status.FAILED}
            retried += job.status == BackupJob.Status.QUEUED
    assert retried > 0
    # Left alone, a retried job completes and verifies; leftovers are cleaned.
    if job.status != BackupJob.Status.QUEUED:
        job = BackupJob.objects.create(website=website, created_at=timezone.now())
    assert jobs.run_backup(job.pk) == "complete"
    job.refresh_from_db()
    assert verify_archive(backup_root / job.archive_name).ok

"""Backup jobs: one in flight per website (concurrent requests join it), run by a django-q2
worker through backups/archive.py, recorded complete only after the archive was renamed into
place (QUALITY Q33), retried when a worker died, deleted after the retention.

The archive is written outside any transaction; its job row is touched only to claim it,
to report progress and the heartbeat (at most once a second, during dumps too) and to record
the outcome. Each of those writes is fenced by the attempt number of the claim, so a run the
sweep gave up on can neither complete nor fail a job another run owns."""

import logging
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.alerts import alert
from audit.catalogue import EventKind, Outcome
from audit.services import record
from backups import archive, sources
from backups.archive import remote
from backups.archive_store import archive_store
from backups.models import BackupJob, EmergencySession, Website
from backups.services import Contact, everyone_told
from backups.site_access import backup_database_url, ssh_credentials
from backups.wordpress import WordPressConfigError

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# A running job whose worker stopped reporting this long ago is given up and retried.
STALE_AFTER = timedelta(seconds=settings.BACKUP_STALE_SECONDS)
PROGRESS_EVERY_SECONDS = 1.0


def start_backup(session: EmergencySession, *,
                 request: HttpRequest | None = None) -> tuple[BackupJob, bool]:
    """The job this session follows: the one in flight for its website (joined: True), or a
    new one queued for the worker."""
    try:
        with transaction.atomic():
            website = Website.objects.select_for_update().get(pk=session.website_id)
            running = website.backups.filter(status__in=BackupJob.IN_FLIGHT).first()
            if running is not None:
                return running, True
            job = BackupJob.objects.create(website=website, requested_by=session,
                                           created_at=timezone.now())
            event = record(EventKind.BACKUP_STARTED, actor=session, target=website,
                           request=request, data={"job": job.pk})
            alert(event, users=everyone_told(website), channels=["email", "sms"],
                  template="event")
            transaction.on_commit(lambda: _enqueue(job.pk))
    except IntegrityError:  # a racing request queued it between our read and insert
        return session.website.backups.get(status__in=BackupJob.IN_FLIGHT), True
    return job, False


def _enqueue(job_id: int) -> None:
    from django_q.tasks import async_task

    try:
        # Its own time limit: a dump of a large site outlasts the cluster's default timeout.
        async_task("backups.tasks.run_backup", job_id,
                   timeout=settings.BACKUP_TIMEOUT_MINUTES * 60)
    except Exception:  # the stale sweep starts it instead; the owner sees it queued
        logger.warning("could not enqueue backup %s; the sweep will", job_id, exc_info=True)


class FencedOut(Exception):
    """This run no longer owns its job: the sweep gave up on it and another run claimed it."""


def _owned(run: BackupJob):
    """The job, only while `run` (the claim that returned it) still owns it: every write of a
    run goes through this, so a late run changes nothing (QUALITY Q42)."""
    return BackupJob.objects.filter(pk=run.pk, status=BackupJob.Status.RUNNING,
                                    attempts=run.attempts)


def _claim(job_id: int) -> BackupJob | None:
    with transaction.atomic():
        job = BackupJob.objects.select_for_update().select_related("website").filter(
            pk=job_id).first()
        if job is None or job.status != BackupJob.Status.QUEUED:
            return None  # already running elsewhere, finished, or gone
        now = timezone.now()
        job.status = BackupJob.Status.RUNNING
        job.attempts += 1  # the run's fencing token
        job.started_at = job.heartbeat_at = now
        job.save(update_fields=["status", "attempts", "started_at", "heartbeat_at"])
        return job


def run_backup(job_id: int) -> str:
    """The worker's task. Idempotent: only a queued job is claimed. Its sources are checked
    again here, on their resolved paths (QUALITY Q40); a refused one fails the job at once."""
    job = _claim(job_id)
    if job is None:
        return "not claimed"
    website = job.website
    if remote.is_ssh_source(website.files_dir):
        return _run_remote_backup(job, website)
    try:
        guard = sources.current_policy()
        files_dir = guard.check_files_dir(website.files_dir) if website.files_dir else None
        url = backup_database_url(website, guard)
        if url is not None:
            guard.check_database_url(url)
    except (sources.SourceRefused, WordPressConfigError) as refused:
        _fail(job, str(refused), retry=False)
        return "failed"
    return _write(job, website, files_dir=files_dir, url=url, guard=guard)


def _run_remote_backup(job: BackupJob, website: Website) -> str:
    """The same backup from another server: its source allowed, its host key the pinned one,
    its real folder allowed once connected. A changed host key is not retried: only the
    manager can decide to trust the new key."""
    try:
        guard = sources.current_policy()
        source = guard.check_ssh_source(website.files_dir)
        with remote.RemoteSite(source, ssh_credentials(website)) as site:
            folder = site.real_folder()
            guard.check_remote_folder(source, folder)
            url = backup_database_url(website, guard, site=site)
            if url is not None:
                guard.check_remote_database_url(source, url)
            return _write(job, website, files_dir=folder, url=url, guard=guard, site=site)
    except (sources.SourceRefused, remote.HostKeyChanged, WordPressConfigError) as refused:
        _fail(job, str(refused), retry=False)
        return "failed"
    except archive.ArchiveError as exc:  # unreachable, refused, dropped: retried
        _fail(job, f"{type(exc).__name__}: {exc}"[:500])
        return "failed"


def _write(job: BackupJob, website: Website, *, files_dir, url: str | None, guard,
           site: "remote.RemoteSite | None" = None) -> str:
    name = f"{website.address}/{website.address}-{job.pk}-{timezone.now():%Y%m%dT%H%M%SZ}.tar.gz"
    store = archive_store()
    if store.local:
        destination, upload = store.path(name), None
        destination.parent.mkdir(parents=True, exist_ok=True)
    else:  # the temporary files stay on this node; the archive streams to the store
        destination = store.spool_folder(name) / Path(name).name
    try:
        if not store.local:
            upload = store.start_upload(name)
        result = archive.write_archive(
            website=website.address, files_dir=files_dir, database_url=url,
            destination=destination, progress=_heartbeat(job), guard=guard, remote=site,
            upload=upload)
    except FencedOut:  # possibly after the rename: an archive never recorded is never served
        _discard(store, name)
        return "fenced out"
    except Exception as exc:  # any failure is recorded, retried while attempts remain
        logger.exception("backup %s of %s failed", job.pk, website.address)
        _fail(job, f"{type(exc).__name__}: {exc}"[:500])
        return "failed"
    if not _complete(job, name, result):
        _discard(store, name)  # never recorded, so never served: reclaim it
        return "fenced out"
    return "complete"


def _discard(store, name: str) -> None:
    try:
        store.delete(name)
    except archive.ArchiveError:  # an unrecorded archive is never served; retention skips it
        logger.warning("could not remove the unrecorded archive %s", name, exc_info=True)


def _heartbeat(run: BackupJob):
    """The archive writer's progress callback, called during dumps too: records progress and
    the heartbeat at most once a second, and stops the run once it no longer owns the job."""
    last = [0.0]

    def progress(phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_SECONDS:
            return
        last[0] = now
        if not _owned(run).update(phase=phase, done_bytes=done, total_bytes=total,
                                  heartbeat_at=timezone.now()):
            raise FencedOut(f"backup {run.pk} attempt {run.attempts} lost its job")

    return progress


@transaction.atomic
def _complete(run: BackupJob, name: str, result) -> bool:
    """The archive is already under its final name: only now is it recorded complete, and
    only if `run` still owns the job."""
    job = _owned(run).select_for_update().select_related("website").first()
    if job is None:
        logger.warning("backup %s attempt %s finished after losing its job", run.pk,
                       run.attempts)
        return False
    job.status = BackupJob.Status.COMPLETE
    job.archive_name = name
    job.size, job.sha256 = result.size, result.sha256
    job.done_bytes = job.total_bytes = result.size
    job.phase = ""
    job.finished_at = timezone.now()
    job.save()
    event = record(EventKind.BACKUP_COMPLETED, actor=None, target=job.website,
                   data={"job": job.pk, "size": job.size, "sha256": job.sha256,
                         "files": result.files})
    alert(event, users=everyone_told(job.website), channels=["email", "sms"], template="event")
    return True


@transaction.atomic
def _fail(run: BackupJob, error: str, *, retry: bool = True) -> None:
    """Records that `run` failed (retried while attempts remain), if it still owns the job."""
    job = _owned(run).select_for_update().select_related("website").first()
    if job is not None:
        _record_failure(job, error, retry=retry)


def _record_failure(job: BackupJob, error: str, *, retry: bool) -> None:
    """The reason may name server paths: it goes to the audit trail and the manager; the
    owner's contacts hear a plain sentence."""
    retry = retry and job.attempts < MAX_ATTEMPTS
    job.status = BackupJob.Status.QUEUED if retry else BackupJob.Status.FAILED
    job.error = error
    job.finished_at = None if retry else timezone.now()
    job.save(update_fields=["status", "error", "finished_at"])
    website = job.website
    event = record(EventKind.BACKUP_FAILED, actor=None, target=website,
                   outcome=Outcome.FAILURE, reason=error,
                   data={"job": job.pk, "attempts": job.attempts, "retried": retry})
    alert(event, users=[website.manager], channels=["email", "sms"], template="event")
    alert(event, users=[Contact(website.verification_email, website.verification_mobile)],
          channels=["email", "sms"], template="backup_failed")
    if retry:
        transaction.on_commit(lambda: _enqueue(job.pk))


@transaction.atomic
def _fail_if_stale(run: BackupJob, cutoff) -> bool:
    """The sweep's verdict, taken again under the lock: a worker that beat since the sweep
    read the row is alive, and its job is left alone."""
    job = _owned(run).select_for_update().select_related("website").first()
    if job is None or (job.heartbeat_at is not None and job.heartbeat_at >= cutoff):
        return False
    _record_failure(job, "the worker stopped reporting progress", retry=True)
    return True


def sweep_stale_jobs() -> int:
    """The minute sweep: a running job whose worker stopped reporting failed (retried while
    attempts remain); a queued job nobody picked up is enqueued again; leftover temporary
    files are removed."""
    now = timezone.now()
    handled = 0
    for job in BackupJob.objects.filter(status=BackupJob.Status.RUNNING,
                                        heartbeat_at__lt=now - STALE_AFTER):
        handled += _fail_if_stale(job, now - STALE_AFTER)
    for job_id in BackupJob.objects.filter(status=BackupJob.Status.QUEUED,
                                           created_at__lt=now - STALE_AFTER).values_list(
            "pk", flat=True):
        _enqueue(job_id)
        handled += 1
    root = Path(settings.BACKUP_ROOT)
    if root.exists():
        for folder in [root, *(path for path in root.iterdir() if path.is_dir())]:
            archive.clean_partials(folder, older_than=STALE_AFTER)
    def running() -> set[int]:
        return set(BackupJob.objects.filter(status=BackupJob.Status.RUNNING).values_list(
            "pk", flat=True))

    try:
        archive_store().abort_abandoned_uploads(STALE_AFTER, running)
    except Exception:  # the store is away: the next sweep tries again
        logger.warning("could not list the store's abandoned uploads", exc_info=True)
    return handled


def delete_expired_archives() -> int:
    """Archives older than their website's retention are deleted, each audited."""
    now = timezone.now()
    deleted = 0
    store = archive_store()
    for job in BackupJob.objects.filter(status=BackupJob.Status.COMPLETE).select_related(
            "website"):
        if job.finished_at > now - timedelta(days=job.website.retention_days):
            continue
        with transaction.atomic():
            locked = BackupJob.objects.select_for_update().get(pk=job.pk)
            if locked.status != BackupJob.Status.COMPLETE:
                continue
            data = {"job": job.pk, "sha256": job.sha256,
                    "retention_days": job.website.retention_days, "store": store.description}
            try:
                removal = store.delete(locked.archive_name)
            except archive.ArchiveError as refused:  # kept, and tried again next hour
                record(EventKind.BACKUP_DELETED, actor=None, target=job.website,
                       outcome=Outcome.FAILURE, reason=str(refused)[:500], data=data)
                continue
            locked.status = BackupJob.Status.DELETED
            locked.save(update_fields=["status"])
            record(EventKind.BACKUP_DELETED, actor=None, target=job.website,
                   data={**data, "answer": removal.answer})
            deleted += 1
    return deleted


def open_archive(job: BackupJob):
    """The archive as a file object, from this node's folder or the shared store:
    FileResponse streams it in chunks."""
    return archive_store().open(job.archive_name)


def record_download(job: BackupJob, session: EmergencySession, *,
                    request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        event = record(EventKind.BACKUP_DOWNLOADED, actor=session, target=job.website,
                       request=request, data={"job": job.pk, "sha256": job.sha256})
        alert(event, users=everyone_told(job.website), channels=["email", "sms"],
              template="event")

"""django-q2 entry points: call the job functions, stay idempotent."""

from backups import jobs


def run_backup(job_id: int) -> str:
    return jobs.run_backup(job_id)


def sweep_stale_jobs() -> int:
    return jobs.sweep_stale_jobs()


def delete_expired_archives() -> int:
    return jobs.delete_expired_archives()

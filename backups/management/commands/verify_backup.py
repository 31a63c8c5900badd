"""`manage.py verify_backup ARCHIVE` (SPEC §2.6): checks every checksum of a backup archive
against its manifest, so that whoever restores it can trust it first. Needs no database."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backups.archive import VerifyReport, verify_archive


class Command(BaseCommand):
    help = ("Verify a backup archive: every member against the size and SHA-256 in its "
            "manifest. Exits 0 only when everything matches. Needs no database.")
    # Run where the server is down, on a copy of the archive: no checks, no migrations, no ORM.
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser) -> None:
        parser.add_argument("archive", type=Path, help="The .tar.gz backup archive.")
        parser.add_argument("--sha256", help="The archive's SHA-256 recorded when it was made "
                                             "(shown with the download); checked too.")

    def handle(self, *args, archive: Path, sha256: str | None, **options) -> None:
        report = verify_archive(archive)
        self.describe(report)
        problems = list(report.problems)
        if sha256 and sha256.strip().lower() != report.sha256:
            problems.append(f"the archive's SHA-256 is {report.sha256}, not the recorded "
                            f"{sha256.strip()}")
        for problem in problems:
            self.stderr.write(f"problem: {problem}")
        if problems:
            raise CommandError(f"backup NOT verified: {len(problems)} problem(s) in {archive}")
        database = " and the database dump" if report.database else ""
        self.stdout.write(f"backup verified: {report.files} files{database} match the manifest")

    def describe(self, report: VerifyReport) -> None:
        manifest = report.manifest
        self.stdout.write(f"Archive SHA-256: {report.sha256 or '-'}")
        if not manifest:
            return
        database = manifest.get("database") or {}
        self.stdout.write(f"Website {manifest.get('website')}, made {manifest.get('created_at')}")
        self.stdout.write(f"Files: {manifest.get('files_count')} ({manifest.get('files_bytes')} "
                          f"bytes); database: {database.get('engine', 'none')}")
        for entry in _entries(manifest, "skipped"):
            self.stdout.write(f"  not in the backup: {entry.get('path')} ({entry.get('reason')})")
        for entry in _entries(manifest, "files"):
            if entry.get("changed") or entry.get("error"):
                note = entry.get("error") or "changed while it was read"
                self.stdout.write(f"  warning: {entry.get('path')}: {note}")


def _entries(manifest: dict, key: str) -> list[dict]:
    """The manifest may have been edited by hand: print what is printable."""
    entries = manifest.get(key)
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(
        entries, list) else []

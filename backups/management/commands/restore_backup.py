"""`manage.py restore_backup ARCHIVE --files-to DIR [--database-url URL | --database-url-env NAME]
[--force]` (SPEC §2.6):
verifies a backup archive, then restores its files into DIR and its database into URL. Runs
where the server is down: needs no Breakglass database.

Exit codes: 0 restored; 2 the archive is not valid or not safe; 3 the target folder or database
is not empty or not usable; 4 the database cannot be restored (tool missing, engine unknown,
restore failed); argparse also exits 2 on bad arguments. Nothing is written before every check
has passed. A failure after that prints what was restored by then: each file under its own name
is complete (a killed restore may leave `.restoring-<token>` temporaries, never a partial file
under a final name), and the database was not restored."""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backups.archive.restoring import RestoreError, restore_archive


class Command(BaseCommand):
    help = ("Restore a backup archive: verify it, then write its files into DIR and its database "
            "into --database-url. Exit codes: 0 restored; 2 archive not valid or not safe; 3 "
            "target not empty or not usable; 4 database not restorable (tool missing, engine "
            "unknown, restore failed). Needs no Breakglass database.")
    # Run where the server is down, on a copy of the archive: no checks, no migrations, no ORM.
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser) -> None:
        parser.add_argument("archive", type=Path, help="The .tar.gz backup archive.")
        parser.add_argument("--files-to", type=Path, required=True, metavar="DIR",
                            help="Folder for the website's files; created if missing. "
                                 "Refused if it is a symlink, or not empty unless --force.")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--database-url", metavar="URL",
                           help="Where the database goes: sqlite:////path/site.sqlite3 (a new "
                                "file), postgres://user:password@host/name or "
                                "mysql://user:password@host:3306/name (an empty database). "
                                "Without it, the database is not restored.")
        where.add_argument("--database-url-env", metavar="NAME",
                           help="The same URL, read from the environment variable NAME: a "
                                "password on the command line is shown to every local user "
                                "by ps.")
        parser.add_argument("--force", action="store_true",
                            help="Write over the files in DIR (others there are kept) and over "
                                 "the database.")

    def handle(self, *args, archive: Path, files_to: Path, database_url: str | None,
               database_url_env: str | None, force: bool, **options) -> None:
        if database_url_env is not None:
            database_url = os.environ.get(database_url_env, "")
            if not database_url:
                raise CommandError(f"backup NOT restored: the environment variable "
                                   f"{database_url_env} is not set or empty", returncode=4)
        try:
            report = restore_archive(archive, files_to=files_to, database_url=database_url,
                                     force=force)
        except RestoreError as refusal:
            for problem in refusal.problems:
                self.stderr.write(f"problem: {problem}")
            for line in refusal.report.summary() if refusal.report else ():
                self.stdout.write(line)
            raise CommandError(f"backup NOT restored: {refusal}",
                               returncode=refusal.exit_code) from None
        for line in report.summary():
            self.stdout.write(line)
        self.stdout.write("backup restored")

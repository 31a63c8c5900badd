import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reports.evidence import verify_pack


class Command(BaseCommand):
    help = ("Verify an evidence pack: every MAC with the audit key, against the database, "
            "and the whole audit chain.")

    def add_arguments(self, parser):
        parser.add_argument("pack", type=Path, help="The pack's JSON file.")

    def handle(self, *args, pack: Path, **options):
        try:
            content = json.loads(pack.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read evidence pack {pack}: {exc}") from exc
        problems = verify_pack(content)
        if problems:
            listed = "\n".join(f"  - {problem}" for problem in problems)
            raise CommandError(f"evidence pack FAILED verification:\n{listed}")
        self.stdout.write(f"evidence pack verified: {len(content['events'])} events")

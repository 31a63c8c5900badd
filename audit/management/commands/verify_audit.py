from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.services import read_checkpoints, verify_trail


class Command(BaseCommand):
    help = "Verify the audit chain (and, with --checkpoint, against checkpoints kept outside)."

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", type=Path, help="A checkpoint file (JSON lines).")

    def handle(self, *args, checkpoint: Path | None = None, **options):
        checkpoints = None
        if checkpoint is not None:
            try:
                checkpoints = read_checkpoints(checkpoint)
            except (OSError, ValueError, KeyError) as exc:
                raise CommandError(f"cannot read checkpoint file {checkpoint}: {exc}") from exc
        report = verify_trail(checkpoints)
        if not report.intact:
            raise CommandError(f"audit chain BROKEN: {report.problem}")
        self.stdout.write(f"audit chain intact: {report.count} events")

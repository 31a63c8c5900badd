from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import CheckpointUnreadable, read_checkpoint_copy, read_stored_checkpoints
from audit.services import verify_trail

FROM_STORAGE = "storage"


class Command(BaseCommand):
    help = ("Verify the audit chain (and, with --checkpoint, against the checkpoints kept "
            "outside the database).")

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoint", nargs="?", const=FROM_STORAGE, metavar="COPY",
            help="Also compare with the checkpoints: alone, those in the checkpoint storage "
                 "(CHECKPOINT_DIR or the S3 bucket); with COPY, a folder of checkpoint objects "
                 "or a JSON-lines file copied out of it.")

    def handle(self, *args, checkpoint: str | None = None, **options):
        checkpoints = None
        try:
            if checkpoint == FROM_STORAGE:
                checkpoints = read_stored_checkpoints()
                if not checkpoints:
                    raise CommandError("the checkpoint storage holds no checkpoint yet")
            elif checkpoint is not None:
                checkpoints = read_checkpoint_copy(Path(checkpoint))
        except CheckpointUnreadable as exc:
            raise CommandError(str(exc)) from exc
        report = verify_trail(checkpoints)
        if not report.intact:
            raise CommandError(f"audit chain BROKEN: {report.problem}")
        against = f", {len(checkpoints)} checkpoints agree" if checkpoints else ""
        self.stdout.write(f"audit chain intact: {report.count} events{against}")

from django.core.management.base import BaseCommand

from audit.services import write_checkpoint


class Command(BaseCommand):
    help = "Verify the audit chain and write a checkpoint of its head (the hourly job, now)."

    def handle(self, *args, **options):
        checkpoint = write_checkpoint()
        state = "verified" if checkpoint.verified else f"BROKEN: {checkpoint.problem}"
        self.stdout.write(f"checkpoint at event {checkpoint.sequence} ({state})")

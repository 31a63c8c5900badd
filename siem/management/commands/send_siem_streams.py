from django.core.management.base import BaseCommand

from siem.services import send_due_streams


class Command(BaseCommand):
    help = ("Send every SIEM stream that is behind the audit chain and not backing off (the "
            "worker does this every second).")

    def handle(self, *args, **options):
        self.stdout.write(f"{send_due_streams()} events sent")

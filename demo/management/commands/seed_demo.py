from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demo.organisation import seed_demo


class Command(BaseCommand):
    help = "Create or refresh the demo organisation and print its sign-ins."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Run even with DEBUG off.")

    def handle(self, *args, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("refusing to load demo users with DEBUG off (use --force)")
        demo = seed_demo(settings.DEMO_PASSWORD)
        self.stdout.write(f"Demo sign-ins (password: {settings.DEMO_PASSWORD}):")
        for sign_in in demo.sign_ins:
            codes = "  ".join(sign_in.backup_codes[:3])
            self.stdout.write(f"  {sign_in.username:<6} {sign_in.role:<30} backup codes: {codes}")
        self.stdout.write("Each backup code works once; run `make run` again for fresh ones.")
        self.stdout.write("Recovery policy root-credentials (2 of alice, bob, erin): recovery "
                          "passphrases are '<username> recovery demo', e.g. 'alice recovery "
                          "demo'.")
        self.stdout.write(demo.connector_note)

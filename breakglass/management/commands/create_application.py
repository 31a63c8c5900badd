from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from breakglass import services
from breakglass.models import Scope


class Command(BaseCommand):
    help = "Create an API application and print its token once."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scope", action="append", required=True, dest="scopes",
                            choices=Scope.values, help="Repeat for several scopes.")

    def handle(self, *args, name: str, scopes: list[str], **options):
        try:
            application, token = services.create_application(name, scopes, actor=None)
        except IntegrityError as exc:
            raise CommandError(f"an application named {name!r} already exists") from exc
        self.stdout.write(f"application {application.name} ({', '.join(application.scopes)})")
        self.stdout.write(f"token (shown once, store it now): {token}")

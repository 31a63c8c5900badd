from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from breakglass.models import Scope
from breakglass.services import applications
from recovery import services as recovery
from recovery.models import RecoveryPolicy


class Command(BaseCommand):
    help = ("Create an API application and print its token once; with --policy, it becomes "
            "the recovery policy's authorized application (recovery:bundle scope).")

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scope", action="append", default=[], dest="scopes",
                            choices=Scope.values, help="Repeat for several scopes.")
        parser.add_argument("--policy", metavar="SLUG",
                            help="Bind it to this recovery policy, which has none yet.")

    def handle(self, *args, name: str, scopes: list[str], policy: str | None, **options):
        try:
            application, token = self._create(name, scopes, policy)
        except IntegrityError as exc:
            raise CommandError(f"an application named {name!r} already exists") from exc
        except recovery.RecoveryError as refused:
            raise CommandError(str(refused)) from refused
        self.stdout.write(f"application {application.name} ({', '.join(application.scopes)})")
        if policy:
            self.stdout.write(f"authorized application of recovery policy {policy}")
        self.stdout.write(f"token (shown once, store it now): {token}")

    def _create(self, name: str, scopes: list[str], slug: str | None) -> tuple:
        if slug is None:
            if not scopes:
                raise CommandError("give at least one --scope (or --policy SLUG)")
            return applications.create_application(name, scopes, actor=None)
        policy = RecoveryPolicy.objects.filter(slug=slug).first()
        if policy is None:
            raise CommandError(f"no recovery policy with slug {slug!r}")
        return recovery.bind_new_application(policy, name=name, scopes=scopes, actor=None)

import os
import sys

from django.core.management.base import BaseCommand, CommandError

from breakglass.models import Connector, Group
from breakglass.services import connectors
from breakglass.services.errors import InvalidInput


class Command(BaseCommand):
    help = ("Create a connector that makes a group's access real in another system, test its "
            "connection, and print its id. Secrets can be read from the environment "
            "(url=env:PROD_DB_URL) so they stay out of the shell history. Exit status: 0 "
            "created and working, 1 refused (the message names the option), 3 created but "
            "the connection test failed.")

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=Connector.Kind.values)
        parser.add_argument("name", help="Short name: letters, digits, - and _.")
        parser.add_argument("--group", required=True, metavar="SLUG",
                            help="The catalog group whose access the connector carries.")
        parser.add_argument("--option", action="append", default=[], dest="options",
                            metavar="KEY=VALUE", help="A setting of the kind; repeat. "
                            "`--option help=1` lists a kind's settings.")
        parser.add_argument("--no-check", action="store_true",
                            help="Do not test the connection after creating it.")

    def handle(self, *args, kind: str, name: str, group: str, options: list[str],
               no_check: bool, **rest):
        if "help=1" in options:
            for setting in connectors.settings_of(kind):
                required = " (required)" if setting.required else ""
                self.stdout.write(f"{setting.key}{required}: {setting.help}")
            return
        catalog_group = Group.objects.filter(slug=group).first()
        if catalog_group is None:
            raise CommandError(f"--group: no catalog group with slug {group!r}")
        try:
            connector = connectors.create_connector(kind, name, catalog_group,
                                                    self._settings(options), actor=None)
        except InvalidInput as invalid:
            raise CommandError(str(invalid)) from None
        self.stdout.write(str(connector.pk))
        if no_check:
            return
        ok, words = connectors.test_connection(connector, actor=None)
        if ok:
            self.stderr.write(f"connection test: {words}", style_func=self.style.SUCCESS)
            return
        self.stderr.write(f"created, but the connection test failed: {words}")
        sys.exit(3)  # scripts can tell "created but not working" from a refusal (1)

    @staticmethod
    def _settings(options: list[str]) -> dict[str, str]:
        settings: dict[str, str] = {}
        for option in options:
            key, equals, value = option.partition("=")
            key = key.strip()
            if not equals or not key:
                raise CommandError(f"option {option!r}: give KEY=VALUE")
            if key in settings:
                raise CommandError(f"option {key}: given twice")
            if value.startswith("env:"):
                variable = value[4:]
                if variable not in os.environ:
                    raise CommandError(f"option {key}: the environment has no {variable}")
                value = os.environ[variable]
            settings[key] = value
        return settings

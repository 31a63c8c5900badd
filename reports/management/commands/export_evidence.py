from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reports.evidence import build_pack, find_subject, pack_html, pack_json, record_export


class Command(BaseCommand):
    help = ("Export the evidence pack of an incident or a grant: OUT.json (verifiable with "
            "verify_evidence) and OUT.html (printable).")

    def add_arguments(self, parser):
        subject = parser.add_mutually_exclusive_group(required=True)
        subject.add_argument("--incident", metavar="EXTERNAL_ID_OR_PK")
        subject.add_argument("--grant", metavar="ID")
        parser.add_argument("out", type=Path, help="OUT, or OUT.json: both files are written.")

    def handle(self, *args, out: Path, incident=None, grant=None, **options):
        kind, identifier = ("incident", incident) if incident is not None else ("grant", grant)
        subject = find_subject(kind, identifier)
        if subject is None:
            raise CommandError(f"no {kind} {identifier!r} is known: nothing was exported.")
        pack = build_pack(**{kind: subject})
        base = out.with_suffix("") if out.suffix == ".json" else out
        json_path = base.with_name(f"{base.name}.json")
        html_path = base.with_name(f"{base.name}.html")
        try:
            json_path.write_text(pack_json(pack), encoding="utf-8")
            html_path.write_text(pack_html(pack), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write the evidence pack: {exc}") from exc
        record_export(subject, pack, actor=None, files=[json_path.name, html_path.name])
        self.stdout.write(f"evidence pack of {subject}: {len(pack['events'])} events "
                          f"in {json_path} and {html_path}")

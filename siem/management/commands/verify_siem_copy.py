from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEvent
from audit.services import audit_key
from siem.verify import JSONL, SYSLOG, verify_copy


class Command(BaseCommand):
    help = ("Verify a copy of the audit trail as a SIEM received it (raw syslog messages, one "
            "a line, or JSON lines): no gap, every MAC recomputed with AUDIT_HMAC_KEY.")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--format", choices=[SYSLOG, JSONL], default=SYSLOG)
        parser.add_argument("--sd-id", default=settings.SIEM_SYSLOG_SD_ID,
                            help="The syslog SD-ID the messages carry (SIEM_SYSLOG_SD_ID).")
        parser.add_argument("--from-database", action="store_true",
                            help="Check the first event follows the trail's event before it.")
        parser.add_argument("--through", type=int, help="The copy must reach this event.")

    def handle(self, *args, file: str, format: str, sd_id: str, from_database: bool,
               through: int | None, **options):
        start_mac = self._start_mac(file, format, sd_id) if from_database else None
        try:
            with open(file, encoding="utf-8", errors="replace", newline="\n") as lines:
                report = verify_copy(audit_key(), lines, fmt=format, sd_id=sd_id,
                                     start_mac=start_mac, through=through)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        counts = (f"{report.events} events (#{report.first} to #{report.last}), "
                  f"{report.duplicates} repeated, {report.skipped} other lines skipped")
        if not report.intact:
            raise CommandError(f"SIEM copy BROKEN after {counts}: {report.problem}")
        self.stdout.write(f"SIEM copy intact: {counts}")

    @staticmethod
    def _start_mac(file: str, format: str, sd_id: str) -> str | None:
        """The MAC of the trail's event before the copy's first one."""
        from siem.verify import CopyReport, received

        with open(file, encoding="utf-8", errors="replace", newline="\n") as lines:
            first = next(received(lines, format, sd_id, CopyReport()), None)
        if first is None or first.sequence == 1:
            return None
        mac = AuditEvent.objects.filter(sequence=first.sequence - 1).values_list(
            "mac", flat=True).first()
        if mac is None:
            raise CommandError(f"the database holds no event {first.sequence - 1}")
        return mac

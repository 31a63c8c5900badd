"""The priority table's starting rows: P1 to P5 of both paging systems (P5 counts as SEV4)."""

from django.db import migrations

STARTING_TABLE = {"P1": "sev1", "P2": "sev2", "P3": "sev3", "P4": "sev4", "P5": "sev4"}


def fill(apps, schema_editor):
    PrioritySeverity = apps.get_model("paging", "PrioritySeverity")
    for source in ("pagerduty", "opsgenie"):
        for priority, severity in STARTING_TABLE.items():
            PrioritySeverity.objects.get_or_create(
                source=source, priority=priority, defaults={"severity": severity})


class Migration(migrations.Migration):
    dependencies = [("paging", "0001_initial")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]

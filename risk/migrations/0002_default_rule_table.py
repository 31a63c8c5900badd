"""The rule table that ships: a sensible default for every sensitivity × severity cell."""

from django.db import migrations


def load_default_table(apps, schema_editor):
    from risk.rules import default_cells

    RiskRule = apps.get_model("risk", "RiskRule")
    for (sensitivity, severity), values in default_cells().items():
        RiskRule.objects.get_or_create(sensitivity=sensitivity, severity=severity,
                                       defaults=values)


def remove_default_table(apps, schema_editor):
    apps.get_model("risk", "RiskRule").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("risk", "0001_initial")]

    operations = [migrations.RunPython(load_default_table, remove_default_table)]

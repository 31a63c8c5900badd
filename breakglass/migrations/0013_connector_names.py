"""Connector names are unique: the ones made before names existed get their kind and id first
(in a migration of its own, so the rows are written before the index is built). They also
start in report mode: reconciliation is new to them, and repairing at once would remove
whoever an operator had put in their Django group by hand."""

from django.db import migrations, models


def name_existing_connectors(apps, schema_editor):
    """Connectors made before names existed are called after their kind and id, and only
    report drift until an operator chooses repair."""
    Connector = apps.get_model("breakglass", "Connector")
    for connector in Connector.objects.filter(name=""):
        connector.name = f"{connector.kind.replace('_', '-')}-{connector.pk}"
        connector.mode = "report"
        connector.save(update_fields=["name", "mode"])



class Migration(migrations.Migration):

    dependencies = [
        ("breakglass", "0012_connectors_to_real_systems"),
    ]

    operations = [
        migrations.RunPython(name_existing_connectors, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="connector",
            name="name",
            field=models.SlugField(default="", help_text="Short name shown to people, e.g. prod-admin-role.", max_length=80, unique=True),
        ),
    ]

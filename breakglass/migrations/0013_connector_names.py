"""Connector names are unique: the ones made before names existed get their kind and id first
(in a migration of its own, so the rows are written before the index is built)."""

from django.db import migrations, models


def name_existing_connectors(apps, schema_editor):
    """Connectors made before names existed are called after their kind and id."""
    Connector = apps.get_model("breakglass", "Connector")
    for connector in Connector.objects.filter(name=""):
        connector.name = f"{connector.kind.replace('_', '-')}-{connector.pk}"
        connector.save(update_fields=["name"])



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

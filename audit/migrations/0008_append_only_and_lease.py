from django.db import migrations, models


class Migration(migrations.Migration):
    """The relay's lease token (audit/outbox.py). The append-only triggers, TRUNCATE and the
    chain head included, are (re)installed after every migrate by audit.triggers.prepare_trail,
    like the earlier ones."""

    dependencies = [("audit", "0007_event_kinds_for_risk_and_reviews")]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="lease_token",
            field=models.CharField(
                blank=True, default="", max_length=32,
                help_text="Set by each claim; the relay's later writes must match it (fencing).",
            ),
            preserve_default=False,
        ),
    ]

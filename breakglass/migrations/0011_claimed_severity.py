from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("breakglass", "0010_drills_and_review_gating")]

    operations = [
        migrations.AddField(
            model_name="grant",
            name="claimed_severity",
            field=models.CharField(
                blank=True,
                choices=[("sev1", "SEV1"), ("sev2", "SEV2"), ("sev3", "SEV3"), ("sev4", "SEV4")],
                help_text="A severity typed without an incident that was counted lower (as "
                          "SEV3 on high and critical groups); the severity above is the one "
                          "that decided.",
                max_length=8,
            ),
        ),
    ]

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

CONFIRMED_HELP = ("A manager named when the website was created has none of a manager's powers, "
                  "and the website sends no code, until a second administrator confirms.")
PENDING_HELP = ("Named by someone other than the manager in office: takes over only when a "
                "second administrator confirms.")


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0002_drills"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Websites that exist already keep the manager they have: default True.
        migrations.AddField(
            model_name="website", name="manager_confirmed",
            field=models.BooleanField(default=True, editable=False, help_text=CONFIRMED_HELP)),
        migrations.AddField(
            model_name="website", name="pending_manager",
            field=models.ForeignKey(
                blank=True, editable=False, help_text=PENDING_HELP, null=True,
                on_delete=django.db.models.deletion.PROTECT, related_name="+",
                to=settings.AUTH_USER_MODEL)),
        migrations.AddField(
            model_name="website", name="manager_named_by",
            field=models.ForeignKey(
                blank=True, editable=False, null=True,
                on_delete=django.db.models.deletion.PROTECT, related_name="+",
                to=settings.AUTH_USER_MODEL)),
        migrations.AddField(
            model_name="historicalwebsite", name="manager_confirmed",
            field=models.BooleanField(default=True, editable=False, help_text=CONFIRMED_HELP)),
        migrations.AddField(
            model_name="historicalwebsite", name="pending_manager",
            field=models.ForeignKey(
                blank=True, db_constraint=False, editable=False, help_text=PENDING_HELP,
                null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                to=settings.AUTH_USER_MODEL)),
        migrations.AddField(
            model_name="historicalwebsite", name="manager_named_by",
            field=models.ForeignKey(
                blank=True, db_constraint=False, editable=False, null=True,
                on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                to=settings.AUTH_USER_MODEL)),
    ]

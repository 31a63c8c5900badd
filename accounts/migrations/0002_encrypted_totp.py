"""Authenticator seeds move from django-otp's plaintext table (otp_totp_totpdevice) into
accounts.TOTPDevice, encrypted under FIELD_ENCRYPTION_KEY; the old table is dropped."""

import datetime

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

import accounts.models

LEGACY_TABLE = "otp_totp_totpdevice"
LEGACY_COLUMNS = ("user_id", "name", "confirmed", "key", "step", "t0", "digits", "tolerance",
                  "drift", "last_t", "created_at", "last_used_at")


def move_plaintext_seeds(apps, schema_editor) -> None:
    """Copy each seed of a database enrolled before encryption, then drop the plaintext table
    (a DELETE could leave the seeds readable in free pages until the next vacuum)."""
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    from recovery.crypto import encrypt_field

    device_model = apps.get_model("accounts", "TOTPDevice")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(LEGACY_COLUMNS)} FROM {LEGACY_TABLE}")
        for row in cursor.fetchall():
            fields = dict(zip(LEGACY_COLUMNS, row, strict=True))
            fields["encrypted_key"] = encrypt_field(fields.pop("key"))
            created_at = fields.pop("created_at")
            if created_at is not None and timezone.is_naive(created_at):  # SQLite's raw rows
                created_at = timezone.make_aware(created_at, datetime.UTC)
            device = device_model.objects.create(**fields)
            # auto_now_add would stamp the move, not the enrolment.
            device_model.objects.filter(pk=device.pk).update(created_at=created_at)
        cursor.execute(f"DROP TABLE {LEGACY_TABLE}")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="TOTPDevice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("name", models.CharField(help_text="The human-readable name of this device.",
                                          max_length=64)),
                ("confirmed", models.BooleanField(default=True,
                                                  help_text="Is this device ready for use?")),
                ("throttling_failure_timestamp", models.DateTimeField(
                    blank=True, default=None, null=True,
                    help_text="A timestamp of the last failed verification attempt. Null if "
                              "last attempt succeeded.")),
                ("throttling_failure_count", models.PositiveIntegerField(
                    default=0, help_text="Number of successive failed attempts.")),
                ("created_at", models.DateTimeField(
                    auto_now_add=True, blank=True, null=True,
                    help_text="The date and time when this device was initially created in "
                              "the system.")),
                ("last_used_at", models.DateTimeField(
                    blank=True, null=True,
                    help_text="The most recent date and time this device was used.")),
                ("encrypted_key", models.TextField(default=accounts.models.new_encrypted_seed,
                                                   editable=False)),
                ("step", models.PositiveSmallIntegerField(
                    default=30, help_text="The time step in seconds.")),
                ("t0", models.BigIntegerField(
                    default=0, help_text="The Unix time at which steps start.")),
                ("digits", models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)],
                                                            default=6)),
                ("tolerance", models.PositiveSmallIntegerField(
                    default=1,
                    help_text="How many time steps before or after now are accepted.")),
                ("drift", models.SmallIntegerField(
                    default=0,
                    help_text="Time steps the app is known to differ from our clock.")),
                ("last_t", models.BigIntegerField(
                    default=-1,
                    help_text="The time step of the last code accepted: a code is used once.")),
                ("user", models.ForeignKey(
                    help_text="The user that this device belongs to.",
                    on_delete=django.db.models.deletion.CASCADE, to=settings.AUTH_USER_MODEL)),
            ],
            options={"verbose_name": "authenticator app", "abstract": False},
        ),
        migrations.RunPython(move_plaintext_seeds, migrations.RunPython.noop),
    ]

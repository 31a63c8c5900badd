"""An index on django-q2's schedule names, which that app does not declare: every grant's
expiry job is found by its name when the grant is extended (update_or_create) and deleted by
name when it ends, a scan of every job without it (the expiry sweep deletes hundreds at a
time). The name is the project's own; both databases accept the statements."""

from django.db import migrations

INDEX = "breakglass_expiry_job_name"


class Migration(migrations.Migration):
    dependencies = [
        ("breakglass", "0016_members_from_directory_group"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON django_q_schedule (name)",
            reverse_sql=f"DROP INDEX IF EXISTS {INDEX}",
        ),
    ]

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit, alerts and health"

    def ready(self) -> None:
        from audit import checks, sign_in_events  # noqa: F401 (checks register themselves)
        from audit.schedules import sync_periodic_tasks
        from audit.triggers import prepare_trail

        sign_in_events.connect()
        # Keeping django-q2's schedule table in step with settings.PERIODIC_TASKS after every
        # migrate means a deployment never runs with a stale or missing periodic job.
        post_migrate.connect(sync_periodic_tasks, sender=self, dispatch_uid="audit.sync_schedules")
        post_migrate.connect(prepare_trail, sender=self, dispatch_uid="audit.prepare_trail")
        # The database cache (the shared counters' home without Redis) needs its table, which
        # `migrate` alone does not create.
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="audit.cache_table")


def create_cache_table(using: str = "default", **kwargs) -> None:
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)

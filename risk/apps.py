from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RiskConfig(AppConfig):
    name = "risk"
    verbose_name = "Risk-based controls"

    def ready(self) -> None:
        from django.core import checks

        from risk.anomalies import check_working_hours

        checks.register(check_working_hours)
        post_migrate.connect(load_default_table_if_empty, sender=self)


def load_default_table_if_empty(sender, using="default", **kwargs) -> None:
    """`flush` empties every table, the rule table with the rest, then sends post_migrate: an
    empty table gets the default back. A table with rows is never touched (a partly deleted one
    stays refused, naming its gap)."""
    from risk.models import RiskRule
    from risk.rules import default_cells

    if RiskRule.objects.using(using).exists():
        return
    RiskRule.objects.using(using).bulk_create(
        RiskRule(sensitivity=sensitivity, severity=severity, **values)
        for (sensitivity, severity), values in default_cells().items())

from simple_history.models import HistoricalRecords


class ConfigurationHistory(HistoricalRecords):
    """History of configuration models, with the acting user from HistoryRequestMiddleware.

    A save that touches only excluded fields (a login stamping `last_login`) is not a
    configuration change and writes no history row, so each real change has exactly one.
    """

    def post_save(self, instance, created, using=None, **kwargs):
        update_fields = kwargs.get("update_fields")
        if not created and update_fields and set(update_fields) <= set(self.excluded_fields):
            return
        super().post_save(instance, created, using=using, **kwargs)

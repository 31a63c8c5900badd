from django.apps import AppConfig


class BreakglassConfig(AppConfig):
    name = "breakglass"

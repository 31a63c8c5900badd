from django.contrib.admin.apps import AdminConfig


class BreakglassAdminConfig(AdminConfig):
    default_site = "config.admin.BreakglassAdminSite"

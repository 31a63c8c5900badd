"""The reports dashboard's admin URLs."""


def dashboard_urls(site) -> list:
    from reports.dashboard import admin_urls

    return admin_urls(site)

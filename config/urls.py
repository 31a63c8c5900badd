from django.contrib import admin
from django.urls import include, path, re_path

from accounts.views import home
from api.main import api
from api.views import outside_the_operations
from audit.metrics import metrics
from audit.views import healthz, livez, readyz

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include("accounts.urls")),
    # At the top level: django-otp-webauthn's scripts reverse its own namespace.
    path("accounts/passkeys/", include("accounts.passkeys")),
    path("", include("breakglass.urls")),
    path("", include("recovery.urls")),
    path("", include("backups.urls")),
    path("", include("review.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", api.urls),
    re_path(r"^api(?:/|$)", outside_the_operations, name="api-fallback"),
    path("scim/v2/", include("scim.urls")),
    # Called by Slack, PagerDuty and Opsgenie: each view checks the vendor's signature.
    path("integrations/slack/", include("chatops.urls")),
    path("integrations/", include("paging.urls")),
]


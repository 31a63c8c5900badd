from django.urls import path

from paging import views

app_name = "paging"

# One URL per subscription: its slug says whose secret or token checks the call.
urlpatterns = [
    path("pagerduty/<slug:subscription>", views.pagerduty, name="pagerduty"),
    path("opsgenie/<slug:subscription>", views.opsgenie, name="opsgenie"),
]

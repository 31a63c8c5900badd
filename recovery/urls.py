from django.urls import path

from recovery import views

app_name = "recovery"

urlpatterns = [
    path("recovery/", views.overview, name="overview"),
    path("recovery/enrol/", views.enrol, name="enrol"),
    path("recovery/<slug:slug>/start/", views.start, name="start"),
    path("recovery/<slug:slug>/kit/", views.kit, name="kit"),
    path("recovery/attempts/<int:attempt_id>/", views.attempt, name="attempt"),
    path("recovery/attempts/<int:attempt_id>/confirm/", views.confirm, name="confirm"),
    path("recovery/attempts/<int:attempt_id>/reveal/", views.reveal, name="reveal"),
    path("recovery/attempts/<int:attempt_id>/cancel/", views.cancel, name="cancel"),
]

from django.urls import path

from backups import views

app_name = "emergency"

urlpatterns = [
    path("emergency/", views.start, name="start"),
    path("emergency/verify/", views.verify, name="verify"),
    path("emergency/verify/new-code/", views.new_code, name="new-code"),
    path("emergency/session/", views.session_page, name="session"),
    path("emergency/session/backup/", views.start_backup, name="start-backup"),
    path("emergency/session/download/<int:job_id>/", views.download, name="download"),
    path("emergency/session/handover/<int:job_id>/", views.handover, name="handover"),
    path("emergency/session/end/", views.end, name="end"),
]

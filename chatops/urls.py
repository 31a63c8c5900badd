from django.urls import path

from chatops import views

app_name = "chatops"

urlpatterns = [
    path("interactions/", views.interactions_endpoint, name="interactions"),
    path("link/<str:token>/", views.link, name="link"),
    path("unlink/", views.unlink, name="unlink"),
]

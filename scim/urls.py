from django.urls import re_path

from scim import views

app_name = "scim"

# One route: scim2-server routes the rest (/Users, /Groups/<id>, /.search, discovery...) and
# answers unknown paths and methods with SCIM errors itself.
urlpatterns = [
    re_path(r"^(?P<path>.*)$", views.endpoint, name="endpoint"),
]

from django.urls import path

from breakglass import views

app_name = "breakglass"

urlpatterns = [
    path("catalog/", views.catalog, name="catalog"),
    path("catalog/<slug:slug>/", views.group_detail, name="group-detail"),
    path("catalog/<slug:slug>/break-glass/", views.break_glass, name="break-glass"),
    path("catalog/<slug:slug>/break-glass-users/", views.manage_break_glass_users,
         name="break-glass-users"),
    path("access/", views.my_access, name="my-access"),
    path("access/grants/<int:grant_id>/end/", views.end_grant, name="end-grant"),
]

from django.urls import path

from breakglass import views

app_name = "breakglass"

urlpatterns = [
    path("catalog/", views.catalog, name="catalog"),
    path("catalog/<slug:slug>/", views.group_detail, name="group-detail"),
    path("catalog/<slug:slug>/break-glass/", views.break_glass, name="break-glass"),
    path("catalog/<slug:slug>/break-glass-users/", views.manage_break_glass_users,
         name="break-glass-users"),
    path("catalog/<slug:slug>/request/", views.request_access, name="request-access"),
    path("catalog/<slug:slug>/request-settings/", views.request_settings,
         name="request-settings"),
    path("access/", views.my_access, name="my-access"),
    path("access/grants/<int:grant_id>/", views.grant_timeline, name="grant-timeline"),
    path("access/grants/<int:grant_id>/end/", views.end_grant, name="end-grant"),
    path("access/grants/<int:grant_id>/extend/", views.request_extension,
         name="request-extension"),
    path("requests/<int:request_id>/", views.request_detail, name="request-detail"),
    path("requests/<int:request_id>/approve/", views.decide_request,
         {"decision": "approve"}, name="approve-request"),
    path("requests/<int:request_id>/deny/", views.decide_request, {"decision": "deny"},
         name="deny-request"),
    path("requests/<int:request_id>/withdraw/", views.decide_request,
         {"decision": "withdraw"}, name="withdraw-request"),
]

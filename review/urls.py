from django.urls import path

from review import views

app_name = "review"
urlpatterns = [
    path("review/", views.review_list, name="list"),
    path("review/<int:review_id>/", views.review_detail, name="detail"),
    path("abort/<str:token>/", views.abort_page, name="abort"),
]

"""A stand-in /api/ URL for checking the middleware's JSON answer before the API exists."""

from django.http import JsonResponse
from django.urls import path

urlpatterns = [path("api/v1/ping", lambda request: JsonResponse({}), name="api-ping")]

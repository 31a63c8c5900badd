"""The app's URLs plus the two baselines the targets are measured against."""

from django.db import transaction
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as app_urlpatterns


def one_indexed_query(request):
    from breakglass.models import Group

    group = Group.objects.filter(slug=request.GET.get("group", "")).values("pk").first()
    return JsonResponse({"found": group is not None})


@csrf_exempt
def one_insert(request):
    from audit.models import Heartbeat

    with transaction.atomic():
        Heartbeat.objects.create(name=f"bench-{Heartbeat.objects.count()}-{id(request)}",
                                 beat_at="2026-01-01T00:00:00Z")
    return JsonResponse({"ok": True}, status=201)


urlpatterns = [
    *app_urlpatterns,
    path("bench/one-query", one_indexed_query, name="bench-one-query"),
    path("bench/one-insert", one_insert, name="bench-one-insert"),
]

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from audit import tasks
from audit.models import Heartbeat
from audit.services import CHECKPOINT_HEARTBEAT, record_heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def recent_checkpoint():
    record_heartbeat(CHECKPOINT_HEARTBEAT)


def test_healthy_when_the_scheduler_beat_recently(client):
    tasks.record_heartbeat()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "problems": []}


def test_reports_a_stopped_scheduler_when_the_heartbeat_is_over_10_minutes_old(client):
    tasks.record_heartbeat()
    beat = Heartbeat.objects.get(name="scheduler")
    beat.beat_at = timezone.now() - timedelta(minutes=11)
    beat.save(update_fields=["beat_at"])
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["problems"] == ["scheduler heartbeat is 11 minutes old"]


def test_a_heartbeat_just_under_10_minutes_is_still_healthy(client):
    tasks.record_heartbeat()
    Heartbeat.objects.filter(name="scheduler").get()
    beat = Heartbeat.objects.get(name="scheduler")
    beat.beat_at = timezone.now() - timedelta(minutes=9, seconds=50)
    beat.save(update_fields=["beat_at"])
    assert client.get("/healthz").status_code == 200


def test_reports_a_scheduler_that_never_ran(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "scheduler heartbeat missing" in response.json()["problems"][0]


def test_healthz_is_get_only_and_never_cached(client):
    assert client.post("/healthz").status_code == 405
    tasks.record_heartbeat()
    assert "no-cache" in client.get("/healthz")["Cache-Control"]


def test_the_heartbeat_schedule_is_declared_in_code_and_synced_by_migrate(settings):
    schedule = Schedule.objects.get(name="periodic:scheduler-heartbeat")
    assert schedule.func == "audit.tasks.record_heartbeat"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1
    settings.PERIODIC_TASKS = {"other": ("audit.tasks.record_heartbeat", 5)}
    call_command("migrate", verbosity=0)
    assert list(Schedule.objects.values_list("name", "minutes")) == [("periodic:other", 5)]


def test_every_declared_periodic_task_is_scheduled(settings):
    names = set(Schedule.objects.values_list("name", flat=True))
    assert names == {f"periodic:{name}" for name in settings.PERIODIC_TASKS}

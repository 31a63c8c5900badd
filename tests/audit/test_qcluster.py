"""A real `manage.py qcluster` against the test database: the scheduler loop picks up the
periodic schedules within seconds, a worker runs them (heartbeat, checkpoint), /healthz turns
healthy, and Ctrl-C (SIGINT) stops the whole cluster."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from audit.models import Heartbeat
from audit.schedules import sync_periodic_tasks

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_real_cluster_beats_the_heartbeat_and_stops_on_sigint(client, tmp_path):
    sync_periodic_tasks()
    Schedule.objects.update(next_run=timezone.now())
    assert client.get("/healthz").status_code == 503
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings", ENVIRONMENT="test",
        DATABASE_URL=database_url(), Q_WORKERS="1", CHECKPOINT_DIR=str(tmp_path),
    )
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # django-q2's own scheduler would need up to 30 s; the one-second loop far less.
        assert wait_for(lambda: Heartbeat.objects.count() == 2, 20)
        assert client.get("/healthz").status_code == 200
        assert list(tmp_path.glob("audit-checkpoint-*.json"))
    finally:
        worker.send_signal(signal.SIGINT)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output[-2000:]
    assert "stopped" in output.lower()

"""With a real `manage.py qcluster` running against the test database, the directory
deprovisions alice over SCIM: her grant ends in the request's own transaction, and the worker,
not the request, delivers the reviewers' alert."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django_q.conf import Conf

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from breakglass.models import Grant
from breakglass.services.break_glass import break_glass
from tests.audit.test_qcluster import database_url, wait_for
from tests.conftest import make_user, sign_in
from tests.scim.conftest import patch

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def start_worker(tmp_path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", ENVIRONMENT="test",
               DATABASE_URL=database_url(), Q_WORKERS="1", CHECKPOINT_DIR=str(tmp_path))
    return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_real_worker_delivers_the_deprovisioning_alert(scim, database, reviewer, tmp_path,
                                                         monkeypatch):
    # This process plays the web server: its nudges go to the broker (the test database)
    # for the worker, instead of running inline as the test settings make them.
    monkeypatch.setattr(Conf, "SYNC", False)
    alice = make_user("alice")
    database.break_glass_users.add(alice)
    alice_browser = sign_in(Client(), alice)
    grant = break_glass(database, actor=alice, reason="database down")
    worker = start_worker(tmp_path)
    try:
        response = scim("PATCH", f"/Users/{alice.pk}",
                        patch({"op": "replace", "path": "active", "value": False}))
        assert response.status_code in {200, 204}, response.content
        grant.refresh_from_db()
        assert grant.status == Grant.Status.REVOKED
        page = alice_browser.get(reverse("breakglass:my-access"))
        assert page.status_code == 302 and page["Location"].startswith(reverse("accounts:login"))
        event = AuditEvent.objects.get(kind=EventKind.ACCOUNT_DEPROVISIONED)
        alert = Delivery.objects.filter(event=event, recipient=reviewer.email)
        assert wait_for(lambda: alert.filter(status=Delivery.Status.SENT).exists(), 60)
    finally:
        worker.send_signal(signal.SIGINT)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output[-2000:]

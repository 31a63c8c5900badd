"""PostgreSQL with real threads (QUALITY Q19, Q20), and expiry by a real worker."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Grant, Group
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import expire_due_grants
from breakglass.services.requests import approve_request, request_access
from tests.audit.test_concurrency import run_in_threads
from tests.audit.test_qcluster import database_url, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database(member):
    group = Group.objects.create(name="Production DB", slug="prod-db")
    group.break_glass_users.add(member)
    return group


def test_50_simultaneous_activations_give_one_grant_and_one_activation(database, member):
    errors = run_in_threads(50, lambda index: break_glass(
        database, actor=member, reason=f"press {index}"))
    assert errors == []
    assert Grant.objects.count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_ACTIVATED).count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXTENDED).count() == 49


def test_two_concurrent_sweeps_give_one_expiry_event_per_grant(database, member, outsider,
                                                              owner):
    for user in (member, outsider, owner):
        database.break_glass_users.add(user)
        break_glass(database, actor=user, reason="r")
    Grant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert run_in_threads(2, lambda index: expire_due_grants()) == []
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED).count() == 3
    assert set(Grant.objects.values_list("status", flat=True)) == {"expired"}


def test_two_owners_approving_at_once_give_one_activation(database, member, owner):
    from tests.conftest import make_user

    second = make_user("bob")
    database.owners.add(owner, second)
    database.requestable = True
    database.save()
    pending = request_access(database, actor=member, minutes=60,
                                             reason="r")
    approvers = [owner, second]
    errors = run_in_threads(2, lambda index: approve_request(
        pending, actor=approvers[index]))
    # One approval activates; the other finds the request decided (409), never a second
    # activation.
    assert len(errors) == 1 and "no longer be decided" in str(errors[0])
    assert AuditEvent.objects.filter(kind=EventKind.REQUEST_APPROVED).count() == 1
    assert Grant.objects.get().status == "active"


def start_worker(tmp_path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", ENVIRONMENT="test",
               DATABASE_URL=database_url(), Q_WORKERS="2", CHECKPOINT_DIR=str(tmp_path))
    return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_worker(worker: subprocess.Popen) -> str:
    worker.send_signal(signal.SIGINT)
    return worker.communicate(timeout=60)[0]


def test_a_lapsed_request_is_audited_once_when_the_worker_runs(database, member, tmp_path):
    from breakglass.models import AccessRequest

    database.requestable = True
    database.save()
    pending = request_access(database, actor=member, minutes=60,
                                             reason="r")
    AccessRequest.objects.update(expires_at=timezone.now() - timedelta(milliseconds=1))
    lapsed = AuditEvent.objects.filter(kind=EventKind.REQUEST_LAPSED)
    assert lapsed.count() == 0  # nothing ran yet, and nothing had to: it cannot be approved
    worker = start_worker(tmp_path)
    try:
        assert wait_for(lambda: lapsed.count() >= 1, 90)
        time.sleep(3)
    finally:
        output = stop_worker(worker)
    assert lapsed.count() == 1, output[-2000:]
    pending.refresh_from_db()
    assert (pending.status, pending.grant.status) == ("lapsed", "lapsed")


def test_a_real_worker_expires_each_grant_exactly_once(database, member, outsider, tmp_path):
    for user in (member, outsider):
        database.break_glass_users.add(user)
        break_glass(database, actor=user, reason="r")
    soon = timezone.now() + timedelta(seconds=2)
    Grant.objects.update(expires_at=soon)
    from django_q.models import Schedule

    Schedule.objects.filter(name__startswith="expire-grant-").update(next_run=soon)
    assert expire_due_grants() == 0
    worker = start_worker(tmp_path)
    try:
        expired = AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED)
        assert wait_for(lambda: expired.count() >= 2, 30)
        time.sleep(3)  # the minute sweep and the per-grant jobs both had their chance
    finally:
        output = stop_worker(worker)
    assert expired.count() == 2, output[-2000:]
    ended = list(Grant.objects.values_list("ended_at", "expires_at"))
    assert all(ended_at == expires_at for ended_at, expires_at in ended)

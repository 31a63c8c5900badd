"""QUALITY Q8: a backup code is single-use even when submitted in parallel (PostgreSQL)."""

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import BackupCode
from accounts.services import issue_backup_codes
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PARALLEL = 20


def test_one_backup_code_submitted_by_20_sessions_at_once_signs_in_exactly_once(member):
    code = issue_backup_codes(member, actor=member)[0]
    clients = []
    for _ in range(PARALLEL):
        client = Client()
        client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
        clients.append(client)
    barrier = threading.Barrier(PARALLEL)
    statuses: list[int] = []
    lock = threading.Lock()

    def submit(client: Client) -> None:
        try:
            barrier.wait()
            status = client.post(reverse("accounts:verify"), {"code": code}).status_code
            with lock:
                statuses.append(status)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(statuses) == PARALLEL
    assert statuses.count(302) == 1, statuses
    assert set(statuses) - {302} <= {400, 429}
    assert BackupCode.objects.filter(used_at__isnull=False).count() == 1
    verified = sum(c.get(reverse("accounts:security")).status_code == 200 for c in clients)
    assert verified == 1

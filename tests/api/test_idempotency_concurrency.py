"""Requests with one Idempotency-Key arriving together, on PostgreSQL with real threads: one
acts, the others answer 409 (still running) or the first answer again."""

import json

import pytest
from django.test import Client

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Grant, Group, Scope
from breakglass.services.applications import create_application
from tests.audit.test_concurrency import run_in_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 8


def test_simultaneous_retries_with_one_key_activate_once(member):
    group = Group.objects.create(name="Production DB", slug="prod-db")
    group.break_glass_users.add(member)
    token = create_application("pager", [Scope.BREAK_GLASS_WRITE], actor=None)[1]
    body = json.dumps({"user": member.username, "group": "prod-db", "reason": "pager"})
    answers: list[tuple[int, str]] = []

    def post(index: int) -> None:
        response = Client().post("/api/v1/break-glass", body, content_type="application/json",
                                 HTTP_AUTHORIZATION=f"Bearer {token}",
                                 HTTP_IDEMPOTENCY_KEY="one-press")
        answers.append((response.status_code, response.get("Idempotent-Replayed", "")))

    assert run_in_threads(THREADS, post) == []
    statuses = sorted(status for status, _ in answers)
    assert len(answers) == THREADS and set(statuses) <= {201, 409}
    assert [answer for answer in answers if answer == (201, "")] == [(201, "")]
    assert Grant.objects.count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_ACTIVATED).count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXTENDED).count() == 0

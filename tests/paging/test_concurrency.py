"""PostgreSQL with real threads: copies of one delivery arriving together are taken once."""

import pytest
from django.test import Client
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from paging.models import ReceivedEvent
from risk.models import Incident
from tests.audit.test_concurrency import run_in_threads
from tests.paging.conftest import pagerduty_signature
from tests.paging.test_pagerduty import incident_event

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_ten_copies_of_one_event_at_once_open_one_incident(pagerduty):
    body = incident_event("incident.triggered", "evt-together")
    results = []

    def deliver(_):
        response = Client().post(reverse("paging:pagerduty", args=["production"]), body,
                                 content_type="application/json",
                                 HTTP_X_PAGERDUTY_SIGNATURE=pagerduty_signature(body))
        results.append((response.status_code, response.json()["result"]))

    assert run_in_threads(10, deliver) == []
    assert sorted(results) == [(200, "applied")] + [(200, "duplicate")] * 9
    assert Incident.objects.count() == 1 and ReceivedEvent.objects.count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.INCIDENT_OPENED).count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.INTEGRATION_WEBHOOK_REFUSED,
                                     data__reason="replayed").count() == 9

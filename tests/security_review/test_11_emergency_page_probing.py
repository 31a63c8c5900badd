"""The emergency page does the same work for known and unknown addresses, throttles each client
address (429 with Retry-After), and writes one refusal event per client per minute however
often the client repeats itself."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from backups import services
from backups.models import EmergencyChallenge
from tests.conftest import example_website, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def website(db):
    return example_website(make_user("bob"))


def statement_shapes(queries) -> list[str]:
    """Each statement's verb and tables, without values or savepoint names."""
    shapes = []
    for query in queries:
        sql = query["sql"].upper()
        if "SAVEPOINT" in sql:
            continue
        verb = sql.split()[0]
        tables = sorted(set(re.findall(r'(?:FROM|INTO|UPDATE|JOIN)\s+"?(\w+)"?', sql)))
        shapes.append(f"{verb} {' '.join(tables)}")
    return shapes


def test_known_and_unknown_addresses_cost_the_same_statements(
        website, django_capture_on_commit_callbacks):
    services.send_code("warm-up.example")  # first-use caches out of the way
    with CaptureQueriesContext(connection) as known, \
            django_capture_on_commit_callbacks() as known_after_commit:
        services.send_code("example.org")
    with CaptureQueriesContext(connection) as unknown, \
            django_capture_on_commit_callbacks() as unknown_after_commit:
        services.send_code("no-such-site.example")
    # The same work after commit too: the relay nudges that queue the sending.
    assert len(unknown_after_commit) == len(known_after_commit) > 0
    assert statement_shapes(unknown.captured_queries) == statement_shapes(
        known.captured_queries)
    assert len(statement_shapes(known.captured_queries)) >= 8  # the lookup, limits, writes
    assert EmergencyChallenge.objects.count() == 1  # the decoy left nothing behind
    assert not AuditEvent.objects.filter(target_label="no-such-site.example").exists()


def test_a_client_address_is_throttled_with_retry_after(website, settings):
    settings.EMERGENCY_PAGE_REQUESTS_PER_MINUTE = 4
    prober = Client(REMOTE_ADDR="198.51.100.7")
    answers = [prober.post(reverse("emergency:start"), {"address": f"site{n}.example"})
               for n in range(4)]
    assert [answer.status_code for answer in answers] == [302] * 4
    refused = prober.post(reverse("emergency:start"), {"address": "example.org"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert prober.post(reverse("emergency:verify"), {"code": "12345678"}).status_code == 429
    assert not EmergencyChallenge.objects.exists()  # the known address was never reached
    throttled = AuditEvent.objects.filter(kind=EventKind.EMERGENCY_THROTTLED)
    assert throttled.count() == 1 and throttled.get().ip == "198.51.100.7"
    other = Client(REMOTE_ADDR="198.51.100.8")
    assert other.post(reverse("emergency:start"), {"address": "example.org"}).status_code == 302


def test_a_forged_forwarded_for_does_not_escape_the_throttle(website, settings):
    settings.EMERGENCY_PAGE_REQUESTS_PER_MINUTE = 2
    settings.TRUSTED_PROXY_COUNT = 1
    statuses = []
    for n in range(3):
        prober = Client(REMOTE_ADDR="10.0.0.1",
                        HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.9")
        statuses.append(prober.post(reverse("emergency:start"),
                                    {"address": "example.org"}).status_code)
    assert statuses == [302, 302, 429]


def test_repeated_refusals_write_one_event_per_client_per_minute(website):
    prober = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(services.SENDS_PER_15_MINUTES):
        prober.post(reverse("emergency:start"), {"address": "example.org"})
    for _ in range(3):
        prober.post(reverse("emergency:verify"), {"code": "00000000"})
    assert AuditEvent.objects.filter(kind=EventKind.EMERGENCY_VERIFY_FAILED).count() == 1
    website.refresh_from_db()
    assert website.consecutive_failures == 3  # damping the trail does not damp the count
    for _ in range(3):
        prober.post(reverse("emergency:start"), {"address": "example.org"})
    assert EmergencyChallenge.objects.count() == services.SENDS_PER_15_MINUTES
    assert AuditEvent.objects.filter(kind=EventKind.EMERGENCY_CODE_REFUSED).count() == 1

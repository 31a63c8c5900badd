"""/metrics: absent until configured, then only for the bearer token or an allowed address,
and every figure read from the database at scrape time, so it moves with the real services."""

import re
import secrets
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from audit import sms
from audit.models import Delivery
from audit.outbox import send_due_deliveries
from backups import jobs
from backups.services import end_session, send_code, verify_code
from breakglass.models import Connector
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import revoke_grant
from siem.models import SiemStream
from siem.services import save_stream, send_now
from tests.audit.fakes import WebhookReceiver
from tests.conftest import example_website
from tests.siem.conftest import make_stream
from tests.test_security_baseline import manage

pytestmark = pytest.mark.django_db

TOKEN = secrets.token_urlsafe(32)
FAMILIES = {
    "breakglass_active_grants": "gauge",
    "breakglass_alert_deliveries_pending": "gauge",
    "breakglass_alert_deliveries_dead_lettered": "gauge",
    "breakglass_alert_relay_lag_seconds": "gauge",
    "breakglass_reviews_open": "gauge",
    "breakglass_oldest_unreviewed_use_age_seconds": "gauge",
    "breakglass_connector_pending_revocations": "gauge",
    "breakglass_emergency_sessions_open": "gauge",
    "breakglass_backup_jobs": "gauge",
    "breakglass_scheduler_heartbeat_age_seconds": "gauge",
    "breakglass_audit_checkpoint_age_seconds": "gauge",
    "breakglass_siem_stream_lag_events": "gauge",
    "breakglass_siem_stream_failing": "gauge",
    "breakglass_audit_events": "counter",
}


class Scrape(dict):
    """Sample values by (sample name, labels)."""

    def __call__(self, name: str, **labels) -> float:
        return self[name, tuple(sorted(labels.items()))]

    def total(self, name: str) -> float:
        return sum(value for (sample, _), value in self.items() if sample == name)


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def _scrape() -> Scrape:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == CONTENT_TYPE_LATEST
        return Scrape({(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                       for family in text_string_to_metric_families(response.content.decode())
                       for sample in family.samples})

    return _scrape


def test_metrics_is_absent_until_a_token_or_an_address_is_configured(client):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404


@pytest.mark.parametrize("authorization", [None, "", "Bearer", f"Bearer {TOKEN}x",
                                           f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN])
def test_a_missing_or_wrong_token_is_refused(client, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.get("/metrics", **headers)
    assert response.status_code == 403
    assert b"breakglass_" not in response.content


def test_the_right_token_is_let_in_from_anywhere(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}",
                          REMOTE_ADDR="192.0.2.1")
    assert response.status_code == 200
    assert b"breakglass_active_grants" in response.content


@pytest.mark.parametrize(("remote", "forwarded", "status"), [
    ("10.1.2.3", None, 200),
    ("::ffff:10.1.2.3", None, 200),
    ("192.0.2.1", None, 403),
    ("10.1.2.3", "192.0.2.1", 200),  # without a trusted proxy the header is ignored
])
def test_only_allowed_addresses_are_let_in_without_a_token(client, settings, remote, forwarded,
                                                           status):
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8", "2001:db8::/32"]
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    assert client.get("/metrics", REMOTE_ADDR=remote, **headers).status_code == status


@pytest.mark.parametrize(("forwarded", "status"), [
    ("192.0.2.7", 403),  # the proxy's own address lets no one in
    ("10.0.0.5, 192.0.2.7", 403),  # nor does a forged entry left of the proxy's
    ("10.0.0.5", 200),
])
def test_behind_a_proxy_the_address_it_forwards_decides(client, settings, forwarded, status):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]
    response = client.get("/metrics", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=forwarded)
    assert response.status_code == status


def test_metrics_is_get_only_and_never_cached(client, settings):
    settings.METRICS_TOKEN = TOKEN
    authorization = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert client.post("/metrics", **authorization).status_code == 405
    assert client.head("/metrics", **authorization).status_code == 200
    assert "no-cache" in client.get("/metrics", **authorization)["Cache-Control"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"METRICS_TOKEN": "too-short"}, "METRICS_TOKEN is too short"),
    ({"METRICS_ALLOWED_ADDRESSES": "10.0.0.1/8"}, "METRICS_ALLOWED_ADDRESSES"),
    ({"METRICS_ALLOWED_ADDRESSES": "intranet"}, "METRICS_ALLOWED_ADDRESSES"),
])
def test_production_refuses_a_weak_token_or_a_malformed_allow_list(overrides, message):
    result = manage("check", **overrides)
    assert result.returncode != 0
    assert message in result.stderr


def test_every_family_is_exposed_with_its_help_and_type(client, settings):
    settings.METRICS_TOKEN = TOKEN
    body = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert {name: family.type for name, family in families.items()} == FAMILIES
    assert all(family.documentation for family in families.values())


def test_no_use_no_backlog_and_no_heartbeat_read_as_zeros_and_infinities(scrape):
    figures = scrape()
    assert figures("breakglass_active_grants", source="break_glass") == 0
    assert figures.total("breakglass_alert_deliveries_pending") == 0
    assert figures("breakglass_alert_relay_lag_seconds") == 0
    assert figures("breakglass_oldest_unreviewed_use_age_seconds") == 0
    assert figures("breakglass_backup_jobs", status="running") == 0
    assert figures("breakglass_scheduler_heartbeat_age_seconds") == float("inf")
    assert figures("breakglass_audit_events_total", kind="grant.activated") == 0


def make_due_now() -> None:
    """The relay's backoff, fast-forwarded: every waiting delivery is due."""
    Delivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())


def test_the_gauges_follow_a_break_glass_from_use_to_revocation(scrape, database, member):
    with WebhookReceiver() as target:
        Connector.objects.create(name="deployers", group=database, kind=Connector.Kind.WEBHOOK,
                                 url=target.url)
        before = scrape()
        grant = break_glass(database, actor=member, reason="replica lag")
        during = scrape()
        assert during("breakglass_active_grants", source="break_glass") == 1 + before(
            "breakglass_active_grants", source="break_glass")
        assert during.total("breakglass_alert_deliveries_pending") > before.total(
            "breakglass_alert_deliveries_pending")
        assert during("breakglass_audit_events_total", kind="grant.activated") == 1 + before(
            "breakglass_audit_events_total", kind="grant.activated")
        assert during("breakglass_reviews_open") == before("breakglass_reviews_open") + 1

        Delivery.objects.filter(status="pending").update(
            next_attempt_at=timezone.now() - timedelta(minutes=10))
        assert 600 <= scrape()("breakglass_alert_relay_lag_seconds") < 660
        send_due_deliveries()
        sent = scrape()
        assert sent.total("breakglass_alert_deliveries_pending") == 0
        assert sent("breakglass_alert_relay_lag_seconds") == 0

        target.status = 503  # the target system is down when the access ends
        revoke_grant(grant, actor=member)
        send_due_deliveries()
        revoking = scrape()
        assert revoking("breakglass_active_grants", source="break_glass") == before(
            "breakglass_active_grants", source="break_glass")
        assert revoking("breakglass_audit_events_total", kind="grant.revoked") == 1
        assert revoking("breakglass_connector_pending_revocations", connector="deployers") == 1
        assert revoking("breakglass_alert_deliveries_pending", channel="connector") == 1

        target.status = 200
        make_due_now()
        send_due_deliveries()
        assert scrape()("breakglass_connector_pending_revocations", connector="deployers") == 0


def test_a_dead_lettered_delivery_is_counted_on_its_channel(scrape, database, member):
    with WebhookReceiver(status=400) as receiver:
        Connector.objects.create(name="hook", group=database, kind=Connector.Kind.WEBHOOK,
                                 url=receiver.url)
        break_glass(database, actor=member, reason="replica lag")
        send_due_deliveries()
    figures = scrape()
    assert figures("breakglass_alert_deliveries_dead_lettered", channel="connector") == 1
    assert figures("breakglass_alert_deliveries_dead_lettered", channel="email") == 0


def test_an_emergency_session_and_its_backup_job_are_counted(scrape, owner, backup_sources,
                                                             settings):
    settings.BACKUP_ROOT = backup_sources / "archives"
    site = backup_sources / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>Open</h1>")
    example_website(owner, files_dir=str(site))
    sms.outbox.clear()
    nonce = send_code("example.org")
    send_due_deliveries()
    session = verify_code(nonce, re.search(r"\b(\d{8})\b", sms.outbox[-1].body).group(1))
    assert scrape()("breakglass_emergency_sessions_open") == 1

    job, _joined = jobs.start_backup(session)
    queued = scrape()
    assert queued("breakglass_backup_jobs", status="queued") == 1
    assert queued("breakglass_audit_events_total", kind="backup.started") == 1
    jobs.run_backup(job.pk)
    done = scrape()
    assert done("breakglass_backup_jobs", status="queued") == 0
    assert done("breakglass_backup_jobs", status="complete") == 1

    end_session(session, reason="the owner left")
    assert scrape()("breakglass_emergency_sessions_open") == 0


def test_a_scrape_costs_one_query_per_family_however_much_there_is(scrape, database, member,
                                                                   owner, tmp_path):
    with CaptureQueriesContext(connection) as empty:
        scrape()
    for name in ("stream-a", "stream-b"):
        save_stream(SiemStream(name=name, kind=SiemStream.Kind.JSONL_FILE,
                               address=str(tmp_path / f"{name}.jsonl")), actor=owner)
    for name in ("hook-a", "hook-b", "hook-c"):
        Connector.objects.create(name=name, group=database, kind=Connector.Kind.WEBHOOK,
                                 url=f"https://{name}.example.org/")
    break_glass(database, actor=member, reason="replica lag")
    with CaptureQueriesContext(connection) as busy:
        figures = scrape()
    assert figures.total("breakglass_connector_pending_revocations") == 0
    assert len(busy) == len(empty) == 9


def test_a_siem_streams_lag_rises_with_new_events_and_falls_once_sent(scrape, database, member,
                                                                      owner, tmp_path):
    copy = tmp_path / "siem.jsonl"
    stream = make_stream(SiemStream.Kind.JSONL_FILE, str(copy), actor=owner)
    before = scrape()("breakglass_siem_stream_lag_events", stream=stream.name)
    assert before >= 1  # at least its own creation event waits
    break_glass(database, actor=member, reason="replica lag")
    behind = scrape()("breakglass_siem_stream_lag_events", stream=stream.name)
    assert behind > before
    assert scrape()("breakglass_siem_stream_failing", stream=stream.name) == 0

    sent, error = send_now(stream)
    assert (sent, error) == (behind, "")
    assert scrape()("breakglass_siem_stream_lag_events", stream=stream.name) == 0

    SiemStream.objects.filter(pk=stream.pk).update(address=str(tmp_path / "gone" / "x.jsonl"))
    break_glass(database, actor=member, reason="second look")
    send_now(SiemStream.objects.get(pk=stream.pk))
    assert scrape()("breakglass_siem_stream_failing", stream=stream.name) == 1
    assert scrape()("breakglass_siem_stream_lag_events", stream=stream.name) > 0

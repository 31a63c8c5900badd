"""/metrics in Prometheus' text format: what an operator watches across every node.

Every value is read from the database at scrape time, the one truth shared by all web nodes
and workers (a counter kept in one process would show only that node's share). Each family
costs one aggregate query. The endpoint is off (404) until METRICS_TOKEN or
METRICS_ALLOWED_ADDRESSES is set; a scrape must then bring the token or come from an allowed
address (403 otherwise). It never uses a session."""

import hmac
import ipaddress
import logging
import math
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from accounts.client_ip import client_ip
from audit.catalogue import EventKind
from audit.models import AuditEvent, ChainHead, Delivery, Heartbeat
from audit.services import CHECKPOINT_HEARTBEAT, SCHEDULER_HEARTBEAT
from backups.models import BackupJob, EmergencySession
from breakglass.models import Connector, Grant
from review.models import Review
from siem.models import SiemStream

logger = logging.getLogger(__name__)

# The audit trail can hold millions of events; counting all of them on every scrape would read
# the whole kind index each time. These kinds are the ones an operator alerts on (emergency
# access used, ended or refused, lock-outs, backups): rare events, so counting them through
# the `audit_event_kind` index stays cheap however large the trail grows. The trail is
# append-only (database triggers), so each count only ever rises: a true counter.
COUNTED_EVENT_KINDS = (
    EventKind.GRANT_ACTIVATED, EventKind.GRANT_EXTENDED, EventKind.GRANT_REFUSED,
    EventKind.GRANT_EXPIRED, EventKind.GRANT_REVOKED, EventKind.GRANTS_REVOKED_ALL,
    EventKind.GRANT_ABORTED, EventKind.REQUEST_APPROVED, EventKind.REQUEST_AUTO_APPROVED,
    EventKind.RECOVERY_STARTED, EventKind.GLASS_BROKEN, EventKind.RECOVERY_REFUSED,
    EventKind.CREDENTIALS_VIEWED, EventKind.EMERGENCY_VERIFIED, EventKind.EMERGENCY_LOCKED,
    EventKind.BACKUP_STARTED, EventKind.BACKUP_COMPLETED, EventKind.BACKUP_FAILED,
    EventKind.BACKUP_DOWNLOADED, EventKind.LOCKOUT, EventKind.LOCAL_LOGIN_USED,
    EventKind.ACCOUNT_DEPROVISIONED, EventKind.REVIEW_CLOSED, EventKind.REVIEW_ESCALATED,
)
UNSENT = (Delivery.Status.PENDING, Delivery.Status.SENDING)


def gauge(name: str, documentation: str, values: dict[str, float] | float,
          label: str = "") -> GaugeMetricFamily:
    """A gauge: one value, or one value per label value when `label` is given."""
    if not label:
        return GaugeMetricFamily(name, documentation, value=values)
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def counts_by(rows: Iterable[tuple[str, int]], keys: Iterable[str]) -> dict[str, int]:
    """Every expected key present (0 when no row): a series never vanishes between scrapes."""
    return {**dict.fromkeys(keys, 0), **dict(rows)}


def age_seconds(now: datetime, since: datetime | None, *, missing: float = 0.0) -> float:
    return missing if since is None else max((now - since).total_seconds(), 0.0)


def grant_metrics(now: datetime) -> Iterator[Metric]:
    rows = (Grant.objects.active(now).order_by().values_list("source")
            .annotate(n=Count("*")))
    yield gauge("breakglass_active_grants",
                "Grants giving access now (active and before their expiry), by source.",
                counts_by(rows, Grant.Source.values), "source")


def delivery_metrics(now: datetime) -> Iterator[Metric]:
    # Due as the relay's claim sees it (audit.outbox.claim_next_delivery): waiting and due,
    # or in flight with a lease that ran out.
    due = (Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
           | Q(status=Delivery.Status.SENDING, claimed_until__lt=now))
    rows = list(Delivery.objects.filter(status__in=[*UNSENT, Delivery.Status.FAILED])
                .order_by().values("channel")
                .annotate(unsent=Count("pk", filter=Q(status__in=UNSENT)),
                          failed=Count("pk", filter=Q(status=Delivery.Status.FAILED)),
                          oldest_due=Min("next_attempt_at", filter=due)))
    channels = Delivery.Channel.values
    yield gauge("breakglass_alert_deliveries_pending",
                "Alert deliveries not sent yet (waiting, retrying or being sent), by channel.",
                counts_by(((row["channel"], row["unsent"]) for row in rows), channels),
                "channel")
    yield gauge("breakglass_alert_deliveries_dead_lettered",
                "Alert deliveries given up after failing for 24 hours, by channel.",
                counts_by(((row["channel"], row["failed"]) for row in rows), channels),
                "channel")
    oldest = min((row["oldest_due"] for row in rows if row["oldest_due"]), default=None)
    yield gauge("breakglass_alert_relay_lag_seconds",
                "Seconds the oldest due, unsent alert delivery has waited (0 when none).",
                age_seconds(now, oldest))


def review_metrics(now: datetime) -> Iterator[Metric]:
    # The open-review index (outcome, opened_at) answers both.
    found = Review.objects.filter(outcome="").aggregate(n=Count("*"), oldest=Min("opened_at"))
    yield gauge("breakglass_reviews_open", "Break-glass uses awaiting a security review.",
                found["n"])
    yield gauge("breakglass_oldest_unreviewed_use_age_seconds",
                "Age in seconds of the oldest break-glass use awaiting review (0 when none).",
                age_seconds(now, found["oldest"]))


def connector_metrics() -> Iterator[Metric]:
    pending = Q(memberships__wanted=False, memberships__applied=False)
    rows = Connector.objects.order_by().values_list("name").annotate(
        n=Count("memberships", filter=pending))
    yield gauge("breakglass_connector_pending_revocations",
                "Revocations a connector's target has not confirmed yet, by connector.",
                dict(rows), "connector")


def backup_metrics(now: datetime) -> Iterator[Metric]:
    sessions = EmergencySession.objects.filter(ended_at__isnull=True, expires_at__gt=now)
    yield gauge("breakglass_emergency_sessions_open",
                "Emergency website sessions open now (verified and inside their window).",
                sessions.count())
    rows = BackupJob.objects.order_by().values_list("status").annotate(n=Count("*"))
    yield gauge("breakglass_backup_jobs", "Emergency backup jobs, by status.",
                counts_by(rows, BackupJob.Status.values), "status")


def heartbeat_metrics(now: datetime) -> Iterator[Metric]:
    beats = dict(Heartbeat.objects.filter(name__in=[SCHEDULER_HEARTBEAT, CHECKPOINT_HEARTBEAT])
                 .values_list("name", "beat_at"))
    # +Inf when none was ever recorded, so one "older than" alert rule covers both cases.
    yield gauge("breakglass_scheduler_heartbeat_age_seconds",
                "Seconds since the background scheduler last proved it runs (+Inf: never).",
                age_seconds(now, beats.get(SCHEDULER_HEARTBEAT), missing=math.inf))
    yield gauge("breakglass_audit_checkpoint_age_seconds",
                "Seconds since the last audit checkpoint was written (+Inf: never).",
                age_seconds(now, beats.get(CHECKPOINT_HEARTBEAT), missing=math.inf))


def audit_metrics() -> Iterator[Metric]:
    rows = (AuditEvent.objects.filter(kind__in=COUNTED_EVENT_KINDS).order_by()
            .values_list("kind").annotate(n=Count("*")))
    family = CounterMetricFamily(
        "breakglass_audit_events", "Audit events recorded, by kind (the kinds alerted on).",
        labels=["kind"])
    for kind, count in sorted(counts_by(rows, map(str, COUNTED_EVENT_KINDS)).items()):
        family.add_metric([kind], count)
    yield family


def siem_metrics() -> Iterator[Metric]:
    # One query: each stream with the chain head beside it (a subquery, not a second trip).
    head = ChainHead.objects.filter(pk=1).values("sequence")
    rows = SiemStream.objects.order_by().annotate(head=Subquery(head)).values_list(
        "name", "head", "sent_through", "enabled", "last_error")
    lag, failing = {}, {}
    for name, head_sequence, sent_through, enabled, last_error in rows:
        lag[name] = max((head_sequence or 0) - sent_through, 0)
        failing[name] = int(enabled and bool(last_error))
    yield gauge("breakglass_siem_stream_lag_events",
                "Audit events a SIEM stream's destination has not accepted yet, by stream.",
                lag, "stream")
    yield gauge("breakglass_siem_stream_failing",
                "1 while a SIEM stream's last send failed (it keeps retrying), by stream.",
                failing, "stream")


class DatabaseCollector:
    """Reads every family from the database at each scrape (prometheus_client's collector
    protocol). A DatabaseError propagates: the view answers 503, never stale numbers."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from grant_metrics(now)
        yield from delivery_metrics(now)
        yield from review_metrics(now)
        yield from connector_metrics()
        yield from backup_metrics(now)
        yield from heartbeat_metrics(now)
        yield from siem_metrics()
        yield from audit_metrics()


# Our own registry: the library's global one would add this process's own runtime figures,
# which differ per node and are not what this endpoint promises.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


def bearer_token_matches(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def from_allowed_address(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(network)
               for network in settings.METRICS_ALLOWED_ADDRESSES)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not (settings.METRICS_TOKEN or settings.METRICS_ALLOWED_ADDRESSES):
        raise Http404
    if not (bearer_token_matches(request) or from_allowed_address(request)):
        logger.warning("metrics scrape refused from %s", client_ip(request))
        return HttpResponse("forbidden\n", status=403, content_type="text/plain; charset=utf-8")
    try:
        body = generate_latest(REGISTRY)
    except DatabaseError as error:
        # The error's class only: a driver's message may quote its connection settings.
        logger.warning("metrics unavailable: %s", type(error).__name__)
        return HttpResponse("database unreachable\n", status=503,
                            content_type="text/plain; charset=utf-8")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)

"""Taking a paging system's webhook: refuse what is not authentic or not fresh (audited,
throttled per address), take each event once, ignore what Breakglass does not act on (audited
once) and turn the rest into the same incident upsert the API uses, with the subscription as
the actor."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.client_ip import client_ip
from audit.catalogue import EventKind, Outcome
from audit.services import Anonymous, record
from paging.models import (
    SERVICE_LINK_HISTORY,
    PrioritySeverity,
    ReceivedEvent,
    ServiceLink,
    Source,
    Subscription,
)
from paging.payloads import PagingEvent, Unparseable, read_opsgenie, read_pagerduty
from paging.signatures import opsgenie_token_accepted, opsgenie_token_hash, pagerduty_signed
from recovery.crypto import encrypt_field
from risk.incidents import IncidentChange, upsert_incident
from risk.models import Incident

REFUSAL_WINDOW_SECONDS = 60
SLUG_LENGTH = Subscription._meta.get_field("slug").max_length


class Refused(Exception):
    """A delivery not taken; `reason` goes to the audit trail, `status` to the sender."""

    def __init__(self, reason: str, status: int, detail: str):
        super().__init__(detail)
        self.reason, self.status, self.detail = reason, status, detail


NOT_AUTHENTICATED = "The signature or token was refused."


@dataclass
class Receipt:
    result: str  # applied, ignored or duplicate
    event: PagingEvent
    change: IncidentChange | None = None


def _refusal_key(request: HttpRequest | None) -> str:
    return f"paging-refusals:{client_ip(request) if request is not None else 'none'}"


def throttled(request: HttpRequest) -> bool:
    """Whether this address was refused too often this minute: it is then answered 429
    before anything is read or written."""
    return cache.get(_refusal_key(request), 0) >= settings.PAGING_REFUSAL_LIMIT


def record_refusal(source: str, reason: str, *, request: HttpRequest | None, slug: str,
                   subscription: Subscription | None = None, data: dict | None = None) -> None:
    """Audit a refused delivery in its own transaction, with bounded data (never the body, the
    signature or the token). The refusal that reaches the address's limit is recorded as
    throttled; later ones within the minute are not recorded at all."""
    key = _refusal_key(request)
    cache.add(key, 0, REFUSAL_WINDOW_SECONDS)
    count = cache.incr(key)
    if count > settings.PAGING_REFUSAL_LIMIT:
        return
    length = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
    details = {"source": source, "reason": reason, "subscription": slug[:50],
               "content_length": str(length)[:20], **(data or {})}
    if count == settings.PAGING_REFUSAL_LIMIT:
        details.update(reason="throttled", last_reason=reason)
    with transaction.atomic():
        record(EventKind.INTEGRATION_WEBHOOK_REFUSED, actor=Anonymous(f"{source} webhook"),
               target=subscription, outcome=Outcome.DENIED, request=request, data=details)


def find_subscription(source: str, slug: str) -> Subscription:
    subscription = None
    if len(slug) <= SLUG_LENGTH:  # a longer one is no slug of ours, whatever it starts with
        subscription = Subscription.objects.filter(source=source, slug=slug).first()
    if subscription is None:
        raise Refused("unknown subscription", 401, NOT_AUTHENTICATED)
    if not subscription.enabled:
        raise Refused("subscription disabled", 401, NOT_AUTHENTICATED)
    return subscription


def read_pagerduty_delivery(subscription: Subscription, body: bytes,
                            signature: str) -> PagingEvent:
    """The event of an authentic, fresh PagerDuty delivery; Refused otherwise. The window
    (PAGING_REPLAY_WINDOW_SECONDS) applies both ways: a clock ahead is as suspect as a replay."""
    if not pagerduty_signed(subscription, body, signature):
        raise Refused("wrong signature", 401, NOT_AUTHENTICATED)
    event = _read(read_pagerduty, body)
    age = (timezone.now() - event.occurred_at).total_seconds()
    if abs(age) > settings.PAGING_REPLAY_WINDOW_SECONDS:
        raise Refused("stale", 401, "The event is outside the replay window.")
    return event


def read_opsgenie_delivery(subscription: Subscription, body: bytes,
                           authorization: str) -> PagingEvent:
    if not opsgenie_token_accepted(subscription, authorization):
        raise Refused("wrong token", 401, NOT_AUTHENTICATED)
    return _read(read_opsgenie, body)


def _read(reader, body: bytes) -> PagingEvent:
    try:
        return reader(body)
    except Unparseable as problem:
        raise Refused("unparseable", 400, str(problem)) from None


@transaction.atomic
def receive_event(subscription: Subscription, event: PagingEvent, *,
                  request: HttpRequest | None = None) -> Receipt:
    """Take one authenticated event once. The first delivery of an event key is kept (a
    unique constraint settles two copies arriving together); a later copy changes nothing and,
    when the first one acted, is audited as a replay. An event type Breakglass does not act on
    is audited as ignored. Otherwise the incident is upserted (open arms the linked groups and
    policies, resolved ends the grants opened under it) with the subscription as the actor.
    Raises IncidentError when the upsert refuses the values (the event is then not kept)."""
    now = timezone.now()
    outcome = ReceivedEvent.Outcome.APPLIED if event.handled else ReceivedEvent.Outcome.IGNORED
    try:
        with transaction.atomic():
            ReceivedEvent.objects.create(
                subscription=subscription, event_key=event.event_key,
                event_type=event.event_type[:100], outcome=outcome, received_at=now)
    except IntegrityError:
        return _duplicate(subscription, event, request)
    _forget_old_events(now)
    if not event.handled:
        record(EventKind.INTEGRATION_EVENT_IGNORED, actor=subscription, target=subscription,
               request=request, data=_describe(subscription, event))
        return Receipt("ignored", event)
    existing = Incident.objects.filter(external_id=event.external_id).first()
    groups, policies = linked(subscription.source, event.link_keys)
    change = upsert_incident(
        external_id=event.external_id, title=event.title,
        severity=severity_for(subscription, event, existing),
        status=event.status or (existing.status if existing else Incident.Status.OPEN),
        url=event.url, groups=groups, policies=policies, actor=subscription, request=request)
    return Receipt("applied", event, change)


def _duplicate(subscription: Subscription, event: PagingEvent, request) -> Receipt:
    first = ReceivedEvent.objects.filter(subscription=subscription,
                                         event_key=event.event_key).first()
    if first is not None and first.outcome == ReceivedEvent.Outcome.APPLIED:
        record_refusal(subscription.source, "replayed", request=request, slug=subscription.slug,
                       subscription=subscription, data=_describe(subscription, event))
    return Receipt("duplicate", event)


def _forget_old_events(now) -> None:
    keep = max(settings.PAGING_EVENT_RETENTION_SECONDS, settings.PAGING_REPLAY_WINDOW_SECONDS)
    ReceivedEvent.objects.filter(received_at__lt=now - timedelta(seconds=keep)).delete()


def _describe(subscription: Subscription, event: PagingEvent) -> dict:
    return {"source": subscription.source, "subscription": subscription.slug,
            "event_type": event.event_type[:100], "event_key": event.event_key[:200]}


def severity_for(subscription: Subscription, event: PagingEvent,
                 existing: Incident | None) -> str:
    """The priority table's severity for the event's priority; without a priority, the
    incident keeps its severity; otherwise the subscription's default."""
    if event.priority:
        row = PrioritySeverity.objects.filter(source=subscription.source,
                                              priority__iexact=event.priority).first()
        if row is not None:
            return row.severity
    elif existing is not None:
        return existing.severity
    return subscription.default_severity


def linked(source: str, keys: list[str]) -> tuple[list[str] | None, list[str] | None]:
    """The slugs of the groups and policies the service links of `keys` arm; (None, None) when
    no link matches, so the incident's links stay as they are (set in the admin, say)."""
    links = list(ServiceLink.objects.filter(source=source, key__in=keys)
                 .prefetch_related("groups", "policies"))
    if not links:
        return None, None
    return (sorted({group.slug for link in links for group in link.groups.all()}),
            sorted({policy.slug for link in links for policy in link.policies.all()}))


@transaction.atomic
def save_subscription(subscription: Subscription, *, secret: str, actor,
                      request: HttpRequest | None = None) -> None:
    """Save a subscription added or changed in the admin (one history row), setting or
    replacing its secret (PagerDuty, kept encrypted) or token (Opsgenie, kept as a hash) when
    `secret` is given. The caller has checked a fresh one-time code for a new subscription or
    secret. Both are audited (as an application created, a token rotated), without the secret
    or anything derived from it."""
    created = subscription.pk is None
    if not created:  # two replacements at once: the second waits, and is audited second
        Subscription.objects.select_for_update().filter(pk=subscription.pk).first()
    if secret:
        is_pagerduty = subscription.source == Source.PAGERDUTY
        subscription.secret_encrypted = encrypt_field(secret) if is_pagerduty else ""
        subscription.token_hash = "" if is_pagerduty else opsgenie_token_hash(secret)
    subscription.save()
    if created or secret:
        record(EventKind.APPLICATION_CREATED if created else EventKind.TOKEN_ROTATED,
               actor=actor, target=subscription, request=request, data={
                   "source": subscription.source, "subscription": subscription.slug,
                   "secret": "signing secret" if subscription.source == Source.PAGERDUTY
                   else "token"})


@transaction.atomic
def save_service_link(link: ServiceLink, *, groups, policies) -> None:
    """Save a service link with the groups and policies it arms as one change: one history row
    carrying the links, where simple-history alone writes one for the row and one more for
    each link added or removed."""
    created = link.pk is None
    link.skip_history_when_saving = True
    try:
        link.save()
        link.groups.set(groups)
        link.policies.set(policies)
    finally:
        del link.skip_history_when_saving
    SERVICE_LINK_HISTORY.create_historical_record(link, "+" if created else "~")

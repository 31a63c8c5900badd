"""A use's story in order, for the grant page and the review page: request and approvals,
activation and extensions, the alerts delivered, the actions systems reported, its end."""

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery


def target_events(target) -> list[AuditEvent]:
    meta = target._meta
    return list(AuditEvent.objects.filter(target_type=f"{meta.app_label}.{meta.model_name}",
                                          target_id=str(target.pk)).order_by("sequence"))


def delivered(events: list[AuditEvent]) -> list[tuple]:
    deliveries = Delivery.objects.filter(event__in=events, status=Delivery.Status.SENT).exclude(
        channel=Delivery.Channel.FANOUT)
    return [(delivery.sent_at, "delivery", delivery) for delivery in deliveries]


REQUEST_KINDS_SHOWN_AS_ITEMS = {EventKind.REQUEST_CREATED, EventKind.REQUEST_APPROVAL}


def grant_timeline_items(grant) -> list[tuple]:
    """(time, kind, item) in time order; kind is event, request, approval, delivery or
    activity."""
    events = target_events(grant)
    # Reported actions appear once, at the time they happened (their events sealed them).
    shown = [event for event in events if event.kind != EventKind.GRANT_ACTIVITY]
    items = [(event.recorded_at, "event", event) for event in shown]
    for access_request in grant.requests.all():
        items.append((access_request.created_at, "request", access_request))
        # The request's decision (approved, denied, withdrawn, lapsed) and what the requester
        # was told; its creation and each approval are the items beside it.
        decisions = [event for event in target_events(access_request)
                     if event.kind not in REQUEST_KINDS_SHOWN_AS_ITEMS]
        items += [(event.recorded_at, "event", event) for event in decisions]
        events += decisions
        items += [(approval.created_at, "approval", approval)
                  for approval in access_request.approvals.select_related("approver")]
    items += delivered(events)
    items += [(activity.happened_at, "activity", activity)
              for activity in grant.activities.select_related("application")]
    items.sort(key=lambda item: item[0])
    return items


def events_timeline_items(*targets) -> list[tuple]:
    """The events of other uses (a quorum attempt, an emergency session's website) with their
    deliveries."""
    events = [event for target in targets if target is not None
              for event in target_events(target)]
    items = [(event.recorded_at, "event", event) for event in events] + delivered(events)
    items.sort(key=lambda item: item[0])
    return items

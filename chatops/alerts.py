"""Slack as an alert destination of the outbox (audit.alerts, audit.outbox).

Posted: a new access request (template "request_created", with Approve / Deny) and a break
glass (template "break_glass", with "Not us"), whichever channels the risk rule's cell names:
Slack is where responders answer them, and a break glass must reach them. A request's
outcome (template "request_decided": approved, denied, lapsed, wherever it was decided)
redraws the request's message instead of posting a new one. Other alerts stay on email, SMS
and the webhook. Each is a Delivery written in the transaction of its event and sent by the
relay to SLACK_CHANNEL."""

import json
from datetime import datetime

from django.conf import settings

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import DeliveryError
from breakglass.models import AccessRequest, Grant
from chatops import blocks, slack

POSTED_TEMPLATES = {"request_created", "break_glass"}
REDRAWN_TEMPLATES = {"request_decided"}
# The recipient of a redraw: the request whose message is redrawn (found at send time).
REDRAW_PREFIX = "redraw-request:"


def slack_targets(event: AuditEvent, channels, template: str) -> list[tuple[str, str]]:
    if not (slack.configured() and settings.SLACK_CHANNEL):
        return []
    if template in POSTED_TEMPLATES:
        return [(Delivery.Channel.SLACK, settings.SLACK_CHANNEL)]
    if template in REDRAWN_TEMPLATES and event.target_type == "breakglass.accessrequest":
        return [(Delivery.Channel.SLACK, f"{REDRAW_PREFIX}{event.target_id}")]
    return []


def render(event: AuditEvent, recipient: str, template: str, context: dict) -> str:
    """The Delivery body: Block Kit blocks and the fallback text, drawn from the event's
    target (never from `context`, which may hold a link meant for one person)."""
    if template in POSTED_TEMPLATES | REDRAWN_TEMPLATES and event.target_type == (
            "breakglass.accessrequest"):
        message, text = blocks.request_message(_access_request(event.target_id))
    else:
        grant = Grant.objects.select_related("user", "group").get(pk=int(event.target_id))
        if event.data.get("expires_at"):
            grant.expires_at = datetime.fromisoformat(event.data["expires_at"])
        message, text = blocks.grant_message(grant)
    return json.dumps({"blocks": message, "text": text}, ensure_ascii=False)


def _access_request(pk) -> AccessRequest:
    return AccessRequest.objects.select_related("requester", "group").get(pk=int(pk))


def send(delivery: Delivery) -> str:
    """The relay's sender: "<channel>:<ts>" of the posted (or redrawn) message."""
    if delivery.recipient.startswith(REDRAW_PREFIX):
        return redraw_request(delivery.recipient.removeprefix(REDRAW_PREFIX))
    body = json.loads(delivery.body)
    return slack.post_message(delivery.recipient, body["blocks"], body["text"])


def redraw_request(pk: str) -> str:
    """Redraw a request's message as the request stands now (a later redraw wins whatever
    order the relay sends them in)."""
    posted = (Delivery.objects.filter(
        channel=Delivery.Channel.SLACK, event__kind=EventKind.REQUEST_CREATED,
        event__target_type="breakglass.accessrequest", event__target_id=pk)
        .exclude(recipient__startswith=REDRAW_PREFIX).first())
    if posted is None or posted.status == Delivery.Status.FAILED:
        return "no-message"  # never posted: nothing to redraw
    if posted.status != Delivery.Status.SENT:
        raise DeliveryError("the request's Slack message is not posted yet")
    channel, _, ts = posted.provider_message_id.partition(":")
    return slack.update_posted(channel, ts, *blocks.request_message(_access_request(pk)))

"""PagerDuty v3 and Opsgenie webhook bodies read into one shape. Only the fields Breakglass
uses are read, each checked for its type and cut to the length the incident keeps.

PagerDuty: "V3 Webhooks" overview, the event envelope and the `incident` data type
(https://github.com/PagerDuty/developer-docs/blob/main/docs/webhooks/01-Overview.md).
Opsgenie: the Webhook integration's alert action data
(https://docs.opsgenie.com/docs/marid-alert-action-data)."""

from dataclasses import dataclass, field
from datetime import datetime

import orjson

from risk.models import Incident

OPEN, ACKNOWLEDGED, RESOLVED = (Incident.Status.OPEN, Incident.Status.ACKNOWLEDGED,
                                Incident.Status.RESOLVED)
# The event says the new status itself; None: the incident's status as sent in the data.
PAGERDUTY_EVENTS = {
    "incident.triggered": OPEN, "incident.reopened": OPEN, "incident.unacknowledged": OPEN,
    "incident.acknowledged": ACKNOWLEDGED, "incident.resolved": RESOLVED,
    "incident.priority_updated": None, "incident.escalated": None,
    "incident.reassigned": None, "incident.delegated": None,
}
PAGERDUTY_STATUSES = {"triggered": OPEN, "acknowledged": ACKNOWLEDGED, "resolved": RESOLVED}
# None: a change of priority, the status stays as it is.
OPSGENIE_ACTIONS = {
    "Create": OPEN, "UnAcknowledge": OPEN, "Acknowledge": ACKNOWLEDGED,
    "Close": RESOLVED, "Delete": RESOLVED, "UpdatePriority": None,
}


class Unparseable(Exception):
    """A body that was signed (or carried the token) but is not what the sender documents."""


@dataclass
class PagingEvent:
    event_key: str
    event_type: str
    occurred_at: datetime | None = None
    handled: bool = False
    external_id: str = ""
    title: str = ""
    status: str | None = None
    url: str = ""
    priority: str = ""
    link_keys: list[str] = field(default_factory=list)


def _load(body: bytes) -> dict:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Unparseable("The body is not JSON.") from None
    if not isinstance(document, dict):
        raise Unparseable("The body is not a JSON object.")
    return document


def _text(value, name: str, *, limit: int, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise Unparseable(f"{name} must be a string.")
    return value.strip()[:limit]


def _object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise Unparseable(f"{name} must be an object.")
    return value


def _web_link(value) -> str:
    link = value if isinstance(value, str) else ""
    return link if link.startswith(("https://", "http://")) and len(link) <= 500 else ""


def read_pagerduty(body: bytes) -> PagingEvent:
    event = _object(_load(body).get("event"), "event")
    event_type = _text(event.get("event_type"), "event.event_type", limit=100, required=True)
    occurred = _text(event.get("occurred_at"), "event.occurred_at", limit=40, required=True)
    try:
        occurred_at = datetime.fromisoformat(occurred)
    except ValueError:
        raise Unparseable("event.occurred_at must be an ISO 8601 time.") from None
    if occurred_at.tzinfo is None:
        raise Unparseable("event.occurred_at must carry its time zone.")
    paging_event = PagingEvent(
        event_key=_text(event.get("id"), "event.id", limit=200, required=True),
        event_type=event_type, occurred_at=occurred_at)
    if event_type not in PAGERDUTY_EVENTS:
        return paging_event
    data = _object(event.get("data"), "event.data")
    status = PAGERDUTY_EVENTS[event_type] or PAGERDUTY_STATUSES.get(data.get("status"))
    if status is None:
        raise Unparseable("event.data.status must be triggered, acknowledged or resolved.")
    priority = data.get("priority")
    service = data.get("service")
    paging_event.handled = True
    paging_event.external_id = "pagerduty:" + _text(data.get("id"), "event.data.id", limit=150,
                                                    required=True)
    paging_event.title = _text(data.get("title"), "event.data.title", limit=300)
    paging_event.status = status
    paging_event.url = _web_link(data.get("html_url"))
    paging_event.priority = _text(priority.get("summary"), "event.data.priority.summary",
                                  limit=50) if isinstance(priority, dict) else ""
    if isinstance(service, dict):
        paging_event.link_keys = [_text(service.get("id"), "event.data.service.id", limit=200)]
    return paging_event


def read_opsgenie(body: bytes) -> PagingEvent:
    document = _load(body)
    action = _text(document.get("action"), "action", limit=100, required=True)
    alert = _object(document.get("alert"), "alert")
    alert_id = _text(alert.get("alertId"), "alert.alertId", limit=100, required=True)
    updated_at = alert.get("updatedAt")
    if isinstance(updated_at, bool) or not isinstance(updated_at, (int, str)):
        raise Unparseable("alert.updatedAt must be a number.")
    # Opsgenie signs nothing and sends no event id: an action on an alert at one update time
    # is taken once.
    paging_event = PagingEvent(event_key=f"{alert_id}:{action}:{str(updated_at)[:40]}",
                               event_type=action)
    if action not in OPSGENIE_ACTIONS:
        return paging_event
    keys = [*_strings(alert.get("teams"), "alert.teams"), *_strings(alert.get("tags"),
                                                                    "alert.tags")]
    paging_event.handled = True
    paging_event.external_id = f"opsgenie:{alert_id}"
    paging_event.title = _text(alert.get("message"), "alert.message", limit=300)
    paging_event.status = OPSGENIE_ACTIONS[action]
    paging_event.priority = _text(alert.get("priority"), "alert.priority", limit=50)
    paging_event.link_keys = keys
    return paging_event


def _strings(value, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Unparseable(f"{name} must be a list of strings.")
    return [item.strip()[:200] for item in value[:100] if item.strip()]

"""The incidents part of the JSON API, mounted under /api/v1/incidents by api/main.py
(which holds the token check and answers every error as a problem detail naming the field)."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.responses import Status

from api.auth import require
from api.idempotency import idempotent
from api.types import Text
from breakglass.models import Scope
from risk.incidents import describe, upsert_incident

router = Router(tags=["incidents"])


class IncidentIn(Schema):
    external_id: Text = Field(min_length=1, max_length=200)
    title: Text = Field("", max_length=300)
    severity: Text = Field(max_length=8, description="sev1 … sev4")
    status: Text = Field("open", max_length=16,
                         description="open, acknowledged or resolved (triggered, closed)")
    url: Text = Field("", max_length=500)
    groups: list[Text] | None = Field(None, description="Slugs of the groups it arms; "
                                                        "replaces the links when given.")
    policies: list[Text] | None = Field(None, description="Slugs of the recovery policies "
                                                          "it arms.")


class IncidentOut(Schema):
    external_id: str
    title: str
    severity: str
    status: str
    url: str
    groups: list[str]
    policies: list[str]
    opened_at: datetime
    resolved_at: datetime | None
    changed: list[str]
    grants_ended: int


@router.post("", response={200: IncidentOut, 201: IncidentOut}, url_name="incidents",
             summary="Open, update or resolve an incident (upsert by external id)")
@idempotent
def upsert(request: HttpRequest, body: IncidentIn):
    application = require(request, Scope.INCIDENTS_WRITE)
    change = upsert_incident(
        external_id=body.external_id, title=body.title, severity=body.severity,
        status=body.status, url=body.url, groups=body.groups, policies=body.policies,
        actor=application, request=request)
    incident = change.incident
    return Status(201 if change.created else 200, {
        **describe(incident), "opened_at": incident.opened_at,
        "resolved_at": incident.resolved_at, "changed": change.changed,
        "grants_ended": change.grants_ended})

"""Incidents as triggers (SPEC §2.7): one upsert by external id for the API (PagerDuty and
Opsgenie style) and the admin. An open incident arms the groups and policies linked to it;
resolving it ends the grants opened under it where the group says so, each audited with the
incident as cause and its holder alerted. Resolving twice changes nothing."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.catalogue import EventKind
from audit.services import record
from breakglass.models import Group
from breakglass.services.incidents import end_access_under
from recovery.models import RecoveryPolicy
from risk.models import Incident, Severity

# What paging systems call the same states.
STATUS_ALIASES = {"triggered": Incident.Status.OPEN, "closed": Incident.Status.RESOLVED}
MAX_TITLE = 300


class IncidentError(Exception):
    """Bad input; `field` names it (the API answers 400, the admin shows it on the field)."""

    status = 400

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class IncidentChange:
    incident: Incident
    created: bool
    changed: list[str]
    grants_ended: int = 0


def clean_fields(*, external_id: str, title: str, severity: str, status: str, url: str
                 ) -> dict:
    external_id = (external_id or "").strip()
    if not external_id or len(external_id) > 200:
        raise IncidentError("external_id", "Give the incident's id (1 to 200 characters).")
    severity = (severity or "").strip().lower()
    if severity not in Severity.values:
        raise IncidentError("severity", "Severity must be one of sev1, sev2, sev3 or sev4.")
    status = STATUS_ALIASES.get((status or "open").strip().lower(),
                                (status or "open").strip().lower())
    if status not in Incident.Status.values:
        raise IncidentError("status", "Status must be open, acknowledged or resolved "
                                      "(triggered and closed are understood too).")
    title = (title or "").strip()
    if len(title) > MAX_TITLE:
        raise IncidentError("title", f"Keep the title under {MAX_TITLE} characters.")
    url = (url or "").strip()
    if url and not url.lower().startswith(("https://", "http://")):
        raise IncidentError("url", "The link must start with https:// or http://.")
    if len(url) > 500:
        raise IncidentError("url", "Keep the link under 500 characters.")
    return {"external_id": external_id, "title": title or external_id, "severity": severity,
            "status": status, "url": url}


def _linked(model, slugs: list[str] | None, field: str):
    if slugs is None:
        return None
    found = {item.slug: item for item in model.objects.filter(slug__in=slugs)}
    unknown = [slug for slug in slugs if slug not in found]
    if unknown:
        raise IncidentError(field, f"Unknown {field}: {', '.join(sorted(set(unknown)))}.")
    return list(found.values())


def upsert_incident(*, external_id: str, title: str = "", severity: str, status: str = "open",
                    url: str = "", groups: list[str] | None = None,
                    policies: list[str] | None = None, actor,
                    request: HttpRequest | None = None) -> IncidentChange:
    """Create the incident or bring it up to date. `groups` and `policies` (slugs) replace its
    links when given. Going to resolved ends the grants opened under it."""
    fields = clean_fields(external_id=external_id, title=title, severity=severity,
                          status=status, url=url)
    linked_groups = _linked(Group, groups, "groups")
    linked_policies = _linked(RecoveryPolicy, policies, "policies")
    try:
        return _upsert(fields, linked_groups, linked_policies, actor=actor, request=request)
    except IntegrityError:
        # Created by a simultaneous call a moment ago: now it exists, so this is an update.
        return _upsert(fields, linked_groups, linked_policies, actor=actor, request=request)


@transaction.atomic
def _upsert(fields, linked_groups, linked_policies, *, actor, request) -> IncidentChange:
    now = timezone.now()
    incident = Incident.objects.select_for_update().filter(
        external_id=fields["external_id"]).first()
    if incident is None:
        with transaction.atomic():
            incident = Incident.objects.create(
                **{**fields, "status": Incident.Status.OPEN}, opened_at=now)
        _set_links(incident, linked_groups, linked_policies)
        record(EventKind.INCIDENT_OPENED, actor=actor, target=incident, request=request,
               data=describe(incident))
        change = IncidentChange(incident, created=True, changed=[])
        if fields["status"] != Incident.Status.OPEN:
            change.changed, change.grants_ended = _move(
                incident, fields["status"], actor=actor, request=request, now=now)
        return change
    before = describe(incident)
    status = fields.pop("status")
    changed = [name for name, value in fields.items() if getattr(incident, name) != value]
    for name in changed:
        setattr(incident, name, fields[name])
    if changed:
        incident.save(update_fields=changed)
    changed += _set_links(incident, linked_groups, linked_policies)
    grants_ended = 0
    if status != incident.status:
        moved, grants_ended = _move(incident, status, actor=actor, request=request, now=now,
                                    before=before if changed else None)
        changed += moved
    elif changed:
        record(EventKind.INCIDENT_UPDATED, actor=actor, target=incident, request=request,
               data={"before": before, "after": describe(incident), "changed": changed})
    return IncidentChange(incident, created=False, changed=changed, grants_ended=grants_ended)


def _set_links(incident, linked_groups, linked_policies) -> list[str]:
    changed = []
    if linked_groups is not None and (
            set(incident.groups.values_list("pk", flat=True)) != {g.pk for g in linked_groups}):
        incident.groups.set(linked_groups)
        changed.append("groups")
    if linked_policies is not None and (
            set(incident.policies.values_list("pk", flat=True))
            != {p.pk for p in linked_policies}):
        incident.policies.set(linked_policies)
        changed.append("policies")
    return changed


def _move(incident, status, *, actor, request, now, before=None) -> tuple[list[str], int]:
    before = before or describe(incident)
    incident.status = status
    incident.resolved_at = now if status == Incident.Status.RESOLVED else None
    incident.save(update_fields=["status", "resolved_at"])
    if status != Incident.Status.RESOLVED:
        record(EventKind.INCIDENT_UPDATED, actor=actor, target=incident, request=request,
               data={"before": before, "after": describe(incident), "changed": ["status"]})
        return ["status"], 0
    event = record(EventKind.INCIDENT_RESOLVED, actor=actor, target=incident, request=request,
                   data={"before": before, "after": describe(incident)})
    del event  # each ended grant's own event names the incident as its cause
    return ["status"], end_access_under(incident, actor=actor, request=request, now=now)


def describe(incident: Incident) -> dict:
    return {"external_id": incident.external_id, "title": incident.title,
            "severity": incident.severity, "status": incident.status, "url": incident.url,
            "groups": sorted(incident.groups.values_list("slug", flat=True)) if incident.pk
            else [], "policies": sorted(incident.policies.values_list("slug", flat=True))
            if incident.pk else []}


def open_incidents_for(target) -> list[Incident]:
    """Open incidents linked to a group or policy, most recent first."""
    return list(target.incidents.exclude(status=Incident.Status.RESOLVED).order_by("-opened_at"))


def open_incidents():
    return Incident.objects.exclude(status=Incident.Status.RESOLVED).order_by("-opened_at")

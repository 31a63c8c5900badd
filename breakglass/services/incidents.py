"""What resolving an incident does to access: the grants opened under it end and its pending
requests lapse, where the group says so (Group.end_grants_on_resolve). risk.incidents calls
this when an incident moves to resolved."""

from django.http import HttpRequest
from django.utils import timezone

from breakglass.models import Grant
from breakglass.services import grants, requests
from risk.models import Incident


def end_access_under(incident: Incident, *, actor, request: HttpRequest | None = None,
                     now=None) -> int:
    """End the active grants opened under `incident` (each audited with the incident as its
    cause, the holder and everyone concerned told) and lapse its pending requests. Returns
    how many grants were revoked (those already past their instant expire instead)."""
    now = now or timezone.now()
    requests.lapse_requests_for_incident(incident, now=now)
    cause = {"incident": incident.external_id, "incident_id": incident.pk}
    revoked = 0
    for grant in (Grant.objects.select_for_update().select_related("group", "user")
                  .filter(incident_record=incident, status=Grant.Status.ACTIVE,
                          group__end_grants_on_resolve=True).order_by("pk")):
        ended = grants.end_grant_now(grant, actor=actor, request=request, cause=cause, tell=True,
                                     reason=f"Incident {incident.external_id} was resolved.")
        revoked += ended == Grant.Status.REVOKED
    return revoked

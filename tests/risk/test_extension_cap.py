"""The risk rule that capped a grant caps each extension request too."""

import pytest
from django.utils import timezone

from breakglass import access_requests, services
from breakglass.models import Group, Sensitivity
from tests.breakglass.helpers import open_incident

pytestmark = pytest.mark.django_db


def test_an_extension_is_capped_by_the_grants_risk_rule(owner, member):
    group = Group.objects.create(name="Vault", slug="vault", sensitivity=Sensitivity.CRITICAL,
                                 requestable=True, request_max_minutes=24 * 60)
    group.owners.add(owner)
    open_incident("INC-9", "sev2", groups=["vault"])  # critical × SEV2: at most 2 hours
    request = access_requests.request_access(group, requester=member, minutes=60, reason="db",
                                             incident="INC-9", stepped_up_at=timezone.now())
    access_requests.approve(request, approver=owner)
    grant = request.grant
    grant.refresh_from_db()

    with pytest.raises(services.InvalidInput, match=r"critical × SEV2 allows at most 2 h"):
        access_requests.request_extension(grant, requester=member, minutes=4 * 60, reason="more")
    extension = access_requests.request_extension(grant, requester=member, minutes=120,
                                                  reason="more")
    assert extension.minutes == 120

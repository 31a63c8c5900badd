"""The risk rule that capped a grant caps each extension request too."""

import pytest
from django.utils import timezone

from breakglass.models import Group
from breakglass.services.errors import InvalidInput
from breakglass.services.requests import approve_request, request_access, request_extension
from risk.models import Sensitivity
from tests.breakglass.helpers import open_incident

pytestmark = pytest.mark.django_db


def test_an_extension_is_capped_by_the_grants_risk_rule(owner, member):
    group = Group.objects.create(name="Vault", slug="vault", sensitivity=Sensitivity.CRITICAL,
                                 requestable=True, request_max_minutes=24 * 60)
    group.owners.add(owner)
    open_incident("INC-9", "sev2", groups=["vault"])  # critical × SEV2: at most 2 hours
    request = request_access(group, actor=member, minutes=60, reason="db",
                                             incident="INC-9", stepped_up_at=timezone.now())
    approve_request(request, actor=owner)
    grant = request.grant
    grant.refresh_from_db()

    with pytest.raises(InvalidInput, match=r"critical × SEV2 allows at most 2 h"):
        request_extension(grant, actor=member, minutes=4 * 60, reason="more")
    extension = request_extension(grant, actor=member, minutes=120,
                                                  reason="more")
    assert extension.minutes == 120

"""Full action logging (SPEC §2.7): systems report what they did under a grant; the grant's
page shows one timeline: activation, alerts delivered, reported actions, the end."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from breakglass.models import Grant
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import revoke_grant
from tests.breakglass.test_api import call

pytestmark = pytest.mark.django_db


@pytest.fixture
def grant(database, member):
    return break_glass(database, actor=member, reason="replica lag")


def test_reported_actions_are_audited_and_shown_in_order(client, app_token, grant, member,
                                                         verified_client):
    # Just after the activation was recorded, and before the revocation below.
    activated = AuditEvent.objects.get(kind=EventKind.GRANT_ACTIVATED).recorded_at
    for step, action in ((1, "restart replica"), (3, "psql"), (2, "ALTER ROLE")):
        response = call(client, "POST", f"/grants/{grant.pk}/activity", app_token,
                        body={"action": action, "detail": f"step {step}",
                              "at": (activated + timedelta(microseconds=step)).isoformat()})
        assert response.status_code == 201, response.content
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_ACTIVITY).count() == 3
    send_due_deliveries()
    revoke_grant(grant, actor=member)
    page = verified_client(member).get(reverse("breakglass:grant-timeline", args=[grant.pk]))
    text = page.content.decode()
    positions = [text.index(action) for action in ("restart replica", "ALTER ROLE", "psql")]
    assert positions == sorted(positions)  # in the order they happened, not reported
    assert text.index(EventKind.GRANT_ACTIVATED.label) < positions[0]
    assert "Alert delivered by email" in text
    assert text.index("Access was ended early") > positions[-1]


@pytest.mark.parametrize(("body", "status"), [
    ({"action": ""}, 400),
    ({"action": "x", "at": "2100-01-01T00:00:00Z"}, 400),
    ({"action": "x", "at": "2000-01-01T00:00:00Z"}, 400),
    ({"action": "x" * 101}, 400),
    ({"detail": "no action"}, 400),
])
def test_bad_reports_are_refused(client, app_token, grant, body, status):
    response = call(client, "POST", f"/grants/{grant.pk}/activity", app_token, body=body)
    assert response.status_code == status
    assert not grant.activities.exists()


def test_reports_for_ended_or_unknown_grants_are_refused(client, app_token, grant, member):
    assert call(client, "POST", "/grants/999999/activity", app_token,
                body={"action": "x"}).status_code == 404
    revoke_grant(grant, actor=member)
    ended = call(client, "POST", f"/grants/{grant.pk}/activity", app_token, body={"action": "x"})
    assert ended.status_code == 409 and "revoked" in ended.json()["detail"]
    again = break_glass(grant.group, actor=member, reason="again")
    Grant.objects.filter(pk=again.pk).update(  # time passing: its instant, no worker yet
        expires_at=timezone.now() - timedelta(seconds=1))
    expired = call(client, "POST", f"/grants/{again.pk}/activity", app_token, body={"action": "x"})
    assert expired.status_code == 409


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["action", "detail", "at", "x"]),
                            st.one_of(st.none(), st.integers(), st.text(max_size=120),
                                      st.text(max_size=10).map(lambda text: text + "\x00"),
                                      st.datetimes().map(lambda moment: moment.isoformat())),
                            max_size=4),
       grant_id=st.one_of(st.integers(-5, 10**12), st.just(None)))
def test_generated_reports_never_cause_a_500(client, app_token, grant, body, grant_id):
    target = grant.pk if grant_id is None else grant_id
    response = call(client, "POST", f"/grants/{target}/activity", app_token, body=body)
    assert response.status_code in {201, 400, 404, 409}

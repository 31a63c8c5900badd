"""Item 9: a severity typed without an incident is a claim nobody confirmed. On high and
critical groups and policies it cannot unlock a looser cell than SEV3: a typed SEV1 or SEV2 is
decided as SEV3 on every path (the group page, the API, access requests, quorum attempts),
and the claim is kept on the grant and the audit event. Choosing an open incident decides as
before; low and medium groups keep the typed severity. The group page says what the
selection will give before anyone presses."""

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_otp import devices_for_user

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import AccessRequest, Grant, Group, Scope
from breakglass.services.applications import create_application
from breakglass.services.errors import InvalidInput
from breakglass.services.requests import request_access, withdraw_request
from recovery import services as recovery
from recovery.models import RecoveryAttempt, RecoveryPolicy
from risk.incidents import upsert_incident
from risk.rules import default_cells
from tests.conftest import add_authenticator, current_totp, make_user

pytestmark = pytest.mark.django_db


def authenticator(user):
    """The user's confirmed authenticator app (the time-based device)."""
    return next(device for device in devices_for_user(user) if hasattr(device, "t0"))

CELLS = default_cells()
DAY = 24 * 60
GUARDED = ["high", "critical"]  # where a typed SEV1/SEV2 counts as SEV3


@pytest.fixture
def make_group(owner, member):
    def _make(sensitivity: str, *, minutes: int | None = DAY) -> Group:
        on_call = Group.objects.create(name="On call", slug="on-call")
        on_call.members.add(member)
        group = Group.objects.create(
            name="Payments", slug="payments", sensitivity=sensitivity,
            break_glass_minutes=minutes, requestable=True, request_max_minutes=14 * DAY,
            auto_approve_group=on_call)
        group.owners.add(owner, make_user("otto"))
        group.break_glass_users.add(member)
        return group

    return _make


def sev1_incident(*, groups=(), policies=()) -> str:
    upsert_incident(external_id="INC-1", title="Checkout down", severity="sev1",
                    groups=list(groups), policies=list(policies), actor=None)
    return "INC-1"


def last_event(kind: str) -> AuditEvent:
    return AuditEvent.objects.filter(kind=kind).order_by("-sequence").first()


def lasts(grant: Grant) -> timedelta:
    return grant.expires_at - grant.activated_at


# --- The group page ----------------------------------------------------------------------------

@pytest.mark.parametrize("sensitivity", GUARDED)
@pytest.mark.parametrize("typed", ["sev1", "sev2"])
def test_the_page_decides_a_typed_severity_as_sev3(verified_client, make_group, member,
                                                   sensitivity, typed):
    group = make_group(sensitivity)
    client = verified_client(member)  # the sign-in code counts as a step-up for 5 minutes
    response = client.post(reverse("breakglass:break-glass", args=[group.slug]),
                           {"reason": "payments are failing", "severity": typed})
    cell = CELLS[sensitivity, "sev3"]
    if not cell["self_service"]:  # critical × SEV3: owners must approve
        assert response.status_code == 403
        page = response.content.decode()
        assert f"Risk rule {sensitivity} × SEV3 does not allow self-service" in page
        assert f"{typed.upper()} typed without an incident counts as SEV3" in page
        assert not Grant.objects.exists()
        risk = last_event(EventKind.GRANT_REFUSED).data["risk"]
        assert (risk["cell"], risk["claimed_severity"]) == (f"{sensitivity} × SEV3", typed)
        return
    assert response.status_code == 302, response.content[:2000]
    grant = Grant.objects.get()
    assert lasts(grant) == timedelta(minutes=cell["max_minutes"])  # 4 hours, not 24
    assert (grant.severity, grant.claimed_severity) == ("sev3", typed)
    assert grant.risk["cell"] == f"{sensitivity} × SEV3"
    risk = last_event(EventKind.GRANT_ACTIVATED).data["risk"]
    assert (risk["cell"], risk["claimed_severity"]) == (f"{sensitivity} × SEV3", typed)


@pytest.mark.parametrize("sensitivity", GUARDED)
def test_an_open_linked_incident_decides_as_before(verified_client, make_group, member,
                                                  sensitivity):
    group = make_group(sensitivity)
    incident = sev1_incident(groups=[group.slug])
    client = verified_client(member)
    response = client.post(reverse("breakglass:break-glass", args=[group.slug]),
                           {"reason": "checkout down", "incident": incident})
    assert response.status_code == 302, response.content[:2000]
    grant = Grant.objects.get()
    cell = CELLS[sensitivity, "sev1"]
    assert lasts(grant) == timedelta(minutes=min(DAY, cell["max_minutes"]))
    assert (grant.severity, grant.claimed_severity) == ("sev1", "")
    risk = last_event(EventKind.GRANT_ACTIVATED).data["risk"]
    assert risk["cell"] == f"{sensitivity} × SEV1" and "claimed_severity" not in risk


@pytest.mark.parametrize("sensitivity", ["low", "medium"])
def test_low_and_medium_groups_keep_the_typed_severity(verified_client, make_group, member,
                                                       sensitivity):
    group = make_group(sensitivity)
    response = verified_client(member).post(
        reverse("breakglass:break-glass", args=[group.slug]),
        {"reason": "r", "severity": "sev1"})
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert (grant.severity, grant.claimed_severity) == ("sev1", "")
    assert grant.risk["cell"] == f"{sensitivity} × SEV1"


# --- The API -----------------------------------------------------------------------------------

@pytest.fixture
def token(db):
    return create_application("pager", [Scope.BREAK_GLASS_WRITE], actor=None)[1]


def api_break_glass(client, token, **body):
    return client.post("/api/v1/break-glass", json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize("sensitivity", GUARDED)
def test_the_api_decides_a_typed_sev1_as_sev3(client, token, make_group, member, sensitivity):
    group = make_group(sensitivity)
    response = api_break_glass(client, token, user=member.username, group=group.slug,
                               reason="pager", severity="sev1")
    # high × SEV3 wants a step-up code an application cannot give; critical × SEV3 is not
    # self-service: either way the SEV3 cell refuses, where the SEV1 cell would not have.
    assert response.status_code == 403, response.content
    assert f"{sensitivity} × SEV3" in response.json()["detail"]
    risk = last_event(EventKind.GRANT_REFUSED).data["risk"]
    assert (risk["cell"], risk["claimed_severity"]) == (f"{sensitivity} × SEV3", "sev1")
    assert not Grant.objects.exists()


def test_the_api_with_a_linked_sev1_incident_decides_as_before(client, token, make_group,
                                                               member):
    group = make_group("high")
    incident = sev1_incident(groups=[group.slug])
    response = api_break_glass(client, token, user=member.username, group=group.slug,
                               reason="pager", incident=incident, severity="sev4")
    assert response.status_code == 201, response.content
    grant = Grant.objects.get()
    assert lasts(grant) == timedelta(minutes=DAY)
    assert (grant.severity, grant.claimed_severity) == ("sev1", "")


def test_the_api_on_a_medium_group_keeps_the_typed_severity(client, token, make_group, member):
    group = make_group("medium")
    response = api_break_glass(client, token, user=member.username, group=group.slug,
                               reason="pager", severity="sev1")
    assert response.status_code == 201
    assert Grant.objects.get().risk["cell"] == "medium × SEV1"


# --- Access requests ---------------------------------------------------------------------------

def test_a_request_on_a_high_group_is_capped_by_the_sev3_cell(make_group, member):
    group = make_group("high")
    fresh = timezone.now() - timedelta(minutes=1)
    with pytest.raises(InvalidInput) as too_long:
        request_access(group, actor=member, minutes=12 * 60, reason="r",
                                       severity="sev1", stepped_up_at=fresh)
    assert "high × SEV3 allows at most 4 hours" in str(too_long.value)
    access_request = request_access(
        group, actor=member, minutes=4 * 60, reason="r", severity="sev1",
        stepped_up_at=fresh)
    assert access_request.status == AccessRequest.Status.APPROVED  # on call: auto-approved
    assert (access_request.risk["cell"], access_request.risk["claimed_severity"]) == (
        "high × SEV3", "sev1")
    grant = Grant.objects.get(pk=access_request.grant_id)
    assert (grant.severity, grant.claimed_severity) == ("sev3", "sev1")
    created = last_event(EventKind.REQUEST_CREATED).data["risk"]
    assert created["claimed_severity"] == "sev1"


def test_a_request_on_a_critical_group_needs_the_sev3_approvals(make_group, member, owner):
    group = make_group("critical")
    fresh = timezone.now() - timedelta(minutes=1)
    typed = request_access(group, actor=member, minutes=60, reason="r",
                                           severity="sev1", stepped_up_at=fresh)
    assert typed.approvals_needed == CELLS["critical", "sev3"]["approvals"] == 2
    assert typed.status == AccessRequest.Status.PENDING  # no auto-approval above one
    withdraw_request(typed, actor=member, reason="wrong form")

    incident = sev1_incident(groups=[group.slug])
    chosen = request_access(group, actor=member, minutes=60, reason="r",
                                            incident=incident, stepped_up_at=fresh)
    assert chosen.approvals_needed == 1 and chosen.status == AccessRequest.Status.APPROVED
    assert "claimed_severity" not in chosen.risk


def test_the_request_page_refuses_past_the_sev3_cap(verified_client, make_group, member):
    group = make_group("high")
    response = verified_client(member).post(
        reverse("breakglass:request-access", args=[group.slug]),
        {"minutes": 12 * 60, "severity": "sev1", "reason": "audit"})
    assert response.status_code == 400
    assert "high × SEV3 allows at most 4 hours" in response.content.decode()
    assert not AccessRequest.objects.exists()


# --- Quorum attempts ---------------------------------------------------------------------------

@pytest.fixture
def pair(db):
    users = [make_user("alice"), make_user("bob")]
    for user in users:
        add_authenticator(user)
    return users


def test_a_quorum_on_a_critical_policy_needs_the_sev3_confirmations(pair):
    alice, bob = pair
    policy = RecoveryPolicy.objects.create(name="Root", slug="root", sensitivity="critical",
                                           required=1, enabled=True, first_user=alice,
                                           second_user=bob)
    attempt = recovery.start_attempt(policy, actor=alice, reason="SSO down",
                                     code=current_totp(authenticator(alice)),
                                     severity="sev1")
    assert attempt.required == CELLS["critical", "sev3"]["approvals"] == 2
    assert attempt.status == RecoveryAttempt.Status.OPEN
    assert (attempt.risk["cell"], attempt.risk["claimed_severity"]) == ("critical × SEV3",
                                                                        "sev1")
    started = last_event(EventKind.RECOVERY_STARTED).data["risk"]
    assert started["claimed_severity"] == "sev1"
    recovery.cancel(attempt, actor=alice)

    incident = sev1_incident(policies=[policy.slug])
    attempt = recovery.start_attempt(policy, actor=alice, reason="SSO down",
                                     code=current_totp(authenticator(alice), 1),
                                     incident=incident)
    assert attempt.required == 1 and attempt.status == RecoveryAttempt.Status.BROKEN
    assert attempt.risk["cell"] == "critical × SEV1" and "claimed_severity" not in attempt.risk


# --- What the page says before anyone presses --------------------------------------------------

def panel(response) -> str:
    page = response.content.decode()
    start = page.index('id="break-glass"')
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page[start:page.index("</section>",
                                                                               start)]))


def test_the_panel_states_each_choice_with_its_real_duration(verified_client, make_group,
                                                             member):
    group = make_group("high", minutes=None)  # the deployment default: 12 hours
    text = panel(verified_client(member).get(reverse("breakglass:group-detail",
                                                     args=[group.slug])))
    assert "up to 12 hours" not in text
    assert "SEV1 typed, no incident counts as SEV3 4 hours code" in text
    assert "SEV2 typed, no incident counts as SEV3 4 hours code" in text
    assert "SEV4 typed, no incident SEV4 no self-service" in text
    assert "a SEV1 or SEV2 typed without an incident counts as SEV3" in text


def test_the_panel_states_the_outcome_of_the_current_selection(verified_client, make_group,
                                                               member):
    group = make_group("high", minutes=None)
    incident = sev1_incident(groups=[group.slug])
    client = verified_client(member)
    url = reverse("breakglass:group-detail", args=[group.slug])
    # The linked incident is preselected: its SEV1 cell gives the group's 12 hours.
    text = panel(client.get(url))
    assert "With this choice: access for 12 hours" in text
    assert f"{incident} (SEV1) SEV1 12 hours" in text
    # A form sent back (no reason) keeps the selection and says what it gives.
    response = client.post(reverse("breakglass:break-glass", args=[group.slug]),
                           {"reason": "", "incident": "", "severity": "sev1"})
    assert response.status_code == 400
    text = panel(response)
    assert "With this choice: access for 4 hours, with a one-time code" in text
    assert "SEV1 typed without an incident counts as SEV3 here" in text

"""The request pages: ask on the group page, decide on /requests/<id>/, see what waits on
/access/, ask for more time, and the owners' request settings."""

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.services import STEP_UP_SESSION_KEY
from breakglass.models import AccessRequest, Grant, Group
from risk.models import Sensitivity
from tests.breakglass.helpers import open_incident
from tests.conftest import make_user, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_client(verified_client, member):
    return verified_client(member)


@pytest.fixture
def staging(owner):
    group = Group.objects.create(name="Staging", slug="staging", requestable=True)
    group.owners.add(owner)
    return group


def ask(client, minutes=120, reason="deploy the hotfix", **fields):
    return client.post(reverse("breakglass:request-access", args=["staging"]),
                       {"minutes": minutes, "reason": reason, **fields})


def test_request_approve_and_see_the_access(client, staging, owner, member):
    sign_in(client, member)
    page = client.get(reverse("breakglass:group-detail", args=["staging"]))
    assert b"Request access" in page.content
    response = ask(client, minutes=240)
    access_request = AccessRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("breakglass:request-detail", args=[access_request.pk])
    detail = client.get(response["Location"])
    assert b"Pending" in detail.content and b"You cannot approve your own request" in detail.content
    assert b"Approve</button>" not in detail.content
    # The requester cannot approve by posting either.
    refused = client.post(reverse("breakglass:approve-request", args=[access_request.pk]))
    assert refused.status_code == 403
    assert b"your own request" in refused.content

    owner_client = sign_in(type(client)(), owner)
    waiting = owner_client.get(reverse("breakglass:my-access"))
    assert b"Waiting for my approval" in waiting.content and b"mark" in waiting.content
    detail = owner_client.get(reverse("breakglass:request-detail", args=[access_request.pk]))
    assert b"Approve</button>" in detail.content
    approved = owner_client.post(reverse("breakglass:approve-request", args=[access_request.pk]),
                                 {"comment": "go ahead"})
    assert approved.status_code == 302
    grant = Grant.objects.get(pk=access_request.grant_id)
    assert grant.status == "active" and (grant.expires_at - grant.activated_at).seconds == 14400
    again = owner_client.post(reverse("breakglass:approve-request", args=[access_request.pk]))
    assert again.status_code == 409 and b"can no longer be decided" in again.content
    mine = client.get(reverse("breakglass:my-access"))
    assert b"Staging" in mine.content and b"Request extension" in mine.content


def test_deny_needs_a_comment_and_tells_why(client, staging, owner, member):
    sign_in(client, member)
    ask(client)
    access_request = AccessRequest.objects.get()
    owner_client = sign_in(type(client)(), owner)
    url = reverse("breakglass:deny-request", args=[access_request.pk])
    assert owner_client.post(url, {"comment": ""}).status_code == 400
    assert owner_client.post(url, {"comment": "not this week"}).status_code == 302
    detail = client.get(reverse("breakglass:request-detail", args=[access_request.pk]))
    assert b"Denied" in detail.content and b"not this week" in detail.content


def test_a_duration_over_the_maximum_is_a_form_error(client, staging, member):
    sign_in(client, member)
    response = ask(client, minutes=9 * 60)
    assert response.status_code == 400
    assert b"Select a valid choice" in response.content
    assert not AccessRequest.objects.exists()


def test_strangers_get_404_for_a_request(client, staging, member, outsider):
    sign_in(client, member)
    ask(client)
    access_request = AccessRequest.objects.get()
    stranger = sign_in(type(client)(), outsider)
    for name in ("request-detail",):
        assert stranger.get(reverse(f"breakglass:{name}", args=[access_request.pk])
                            ).status_code == 404
    for name in ("approve-request", "deny-request", "withdraw-request"):
        assert stranger.post(reverse(f"breakglass:{name}", args=[access_request.pk]),
                             {"comment": "x"}).status_code == 404
    assert AccessRequest.objects.get().status == "pending"


def test_withdraw_from_the_request_page(client, staging, member):
    sign_in(client, member)
    ask(client)
    access_request = AccessRequest.objects.get()
    response = client.post(reverse("breakglass:withdraw-request", args=[access_request.pk]))
    assert response.status_code == 302
    assert AccessRequest.objects.get().status == "withdrawn"


def test_an_extension_from_my_access(client, staging, owner, member):
    sign_in(client, member)
    ask(client, minutes=60)
    access_request = AccessRequest.objects.get()
    sign_in(type(client)(), owner).post(
        reverse("breakglass:approve-request", args=[access_request.pk]))
    grant = Grant.objects.get(pk=access_request.grant_id)
    response = client.post(reverse("breakglass:request-extension", args=[grant.pk]),
                           {"minutes": 120, "reason": "almost done"})
    extension = AccessRequest.objects.get(kind="extension")
    assert response["Location"] == reverse("breakglass:request-detail", args=[extension.pk])
    # Someone else's grant is not found.
    other = sign_in(type(client)(), make_user("zoe"))
    assert other.post(reverse("breakglass:request-extension", args=[grant.pk]),
                      {"minutes": 30, "reason": "x"}).status_code == 404


def test_owners_change_request_settings_others_cannot(client, staging, owner, member):
    url = reverse("breakglass:request-settings", args=["staging"])
    values = {"requestable": "on", "request_max_minutes": 60, "request_reason_required": "on",
              "approvals_needed": 1, "request_expiry_minutes": 120}
    sign_in(client, member)
    assert client.post(url, values).status_code == 403
    owner_client = sign_in(type(client)(), owner)
    assert owner_client.post(url, {**values, "approvals_needed": 2}).status_code == 400
    assert owner_client.post(url, values).status_code == 302
    staging.refresh_from_db()
    assert (staging.request_max_minutes, staging.request_expiry_minutes) == (60, 120)


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.dictionaries(
    st.sampled_from(["minutes", "reason", "incident", "x"]),
    st.one_of(st.text(max_size=300), st.integers(-10**9, 10**9).map(str),
              st.text(max_size=10).map(lambda text: text + "\x00")), max_size=4))
def test_generated_request_forms_never_cause_a_500(member_client, staging, data):
    response = member_client.post(reverse("breakglass:request-access", args=["staging"]), data)
    assert response.status_code in {302, 400, 409}
    AccessRequest.objects.all().delete()
    Grant.objects.all().delete()


@pytest.fixture
def vault(owner):
    """A requestable high-sensitivity group (requests at SEV3 and SEV4 need a step-up) that
    needs an incident, and open INC-1 (SEV1), INC-2 (SEV3), INC-4 (SEV4), resolved INC-3."""
    from risk.incidents import upsert_incident

    group = Group.objects.create(name="Vault", slug="vault", requestable=True,
                                 sensitivity=Sensitivity.HIGH, request_incident_required=True,
                                 request_max_minutes=24 * 60)
    group.owners.add(owner)
    for external_id, severity in (("INC-1", "sev1"), ("INC-2", "sev3"), ("INC-4", "sev4"),
                                  ("INC-3", "sev2")):
        open_incident(external_id, severity, groups=["vault"])
    upsert_incident(external_id="INC-3", severity="sev2", status="resolved", actor=None)
    return group


RISK_TEXT = st.one_of(st.text(max_size=40), st.text(max_size=10).map(lambda text: text + "\x00"),
                      st.text(min_size=2000, max_size=2100))
INCIDENTS = st.sampled_from(["INC-1", "INC-2", "INC-3", "INC-4", " INC-1", "", "inc-1"])
SEVERITIES = st.sampled_from(["sev1", "sev2", "sev3", "sev4", "", "SEV1"])
CODES = st.one_of(st.just(""), st.just(""), st.from_regex(r"\A[0-9]{6}\Z"),
                  st.from_regex(r"\A[0-9 ]{1,12}\Z"), st.text(max_size=40),
                  st.text(max_size=8).map(lambda text: text + "\x00"))


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(slug=st.sampled_from(["staging", "vault"]), stepped_up=st.booleans(),
       data=st.fixed_dictionaries(
           {"minutes": st.one_of(st.sampled_from(["60", "240", "1440"]),
                                 st.integers(-10**9, 10**9).map(str)),
            "reason": st.one_of(st.just("deploy the hotfix"), st.text(max_size=300))},
           optional={"incident": st.one_of(INCIDENTS, INCIDENTS, INCIDENTS, RISK_TEXT),
                     "severity": st.one_of(SEVERITIES, SEVERITIES, SEVERITIES, RISK_TEXT),
                     "code": CODES}))
def test_generated_incident_severity_and_code_on_requests_never_cause_a_500(
        member_client, staging, vault, slug, stepped_up, data):
    """Refused (400/403/409) or sent on (302), never a 500; a request that needs a step-up is
    never made without one."""
    if not stepped_up:  # the sign-in code counts as a step-up for 5 minutes: forget it
        session = member_client.session
        session.pop(STEP_UP_SESSION_KEY, None)
        session.save()
    response = member_client.post(reverse("breakglass:request-access", args=[slug]), data)
    assert response.status_code in {302, 400, 403, 409}
    if response.status_code == 302:
        made = AccessRequest.objects.get(group__slug=slug)
        if slug == "vault":
            assert made.incident == "INC-1" or (made.incident in {"INC-2", "INC-4"}
                                                and stepped_up)
        else:
            assert made.incident in {"", "INC-1", "INC-2", "INC-4"}
    AccessRequest.objects.all().delete()
    Grant.objects.all().delete()

"""Who may call /scim/v2/: an application's bearer token with the scim:write scope, throttled
like the JSON API; never a session. Refusals are SCIM errors."""

import pytest
from django.test import Client

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Application, Scope
from breakglass.services.applications import create_application, rotate_token
from tests.conftest import sign_in
from tests.scim.conftest import SCIM_JSON, new_user

pytestmark = pytest.mark.django_db

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.mark.parametrize("token", [None, "bg_deadbeef_wrong", "not-even-our-format"])
def test_no_or_a_wrong_token_is_a_401_scim_error_with_a_bearer_challenge(scim, token):
    response = scim("GET", "/Users", token=token)
    assert response.status_code == 401
    assert response["Content-Type"] == SCIM_JSON
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["schemas"] == [ERROR_SCHEMA]
    assert response.json()["status"] == "401"
    assert AuditEvent.objects.filter(kind=EventKind.API_AUTH_FAILED).count() == 1


def test_a_token_without_the_scim_scope_is_a_403(scim):
    _, token = create_application("siem", [Scope.AUDIT_READ], actor=None)
    response = scim("POST", "/Users", new_user("alice"), token=token)
    assert response.status_code == 403
    assert "scim:write" in response.json()["detail"]
    assert not AuditEvent.objects.filter(kind=EventKind.SCIM_USER_CREATED).exists()


def test_a_disabled_application_and_a_replaced_token_stop_working_at_once(scim, directory):
    application, token = directory
    assert scim("GET", "/Users").status_code == 200
    new_token = rotate_token(application, actor=None)
    assert scim("GET", "/Users", token=token).status_code == 401
    assert scim("GET", "/Users", token=new_token).status_code == 200
    Application.objects.filter(pk=application.pk).update(enabled=False)
    refused = scim("GET", "/Users", token=new_token)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This application is disabled."


def test_repeated_failures_from_one_address_get_429_even_with_a_good_token(scim, settings):
    settings.API_TOKEN_FAILURE_LIMIT = 3
    statuses = [scim("GET", "/Users", token="bg_deadbeef_wrong").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    throttled = scim("GET", "/Users")
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "60"
    assert throttled.json()["schemas"] == [ERROR_SCHEMA]
    assert AuditEvent.objects.filter(kind=EventKind.API_THROTTLED).count() == 1


def test_a_signed_in_administrator_without_a_token_is_refused(admin_user):
    client = sign_in(Client(), admin_user)
    response = client.get("/scim/v2/Users")
    assert response.status_code == 401
    created = client.post("/scim/v2/Users", new_user("alice"), content_type=SCIM_JSON)
    assert created.status_code == 401


def test_the_token_is_accepted_only_in_the_authorization_header(client, directory):
    _, token = directory
    assert client.get("/scim/v2/Users", {"access_token": token}).status_code == 401
    assert client.get("/scim/v2/Users", HTTP_COOKIE=f"token={token}").status_code == 401

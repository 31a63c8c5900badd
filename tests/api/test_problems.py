"""Every error under /api/ is an RFC 9457 problem detail (api/errors.py), with the challenge
headers of RFC 6750 on 401 and Retry-After on 429."""

import pytest

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Scope
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import revoke_grant
from tests.api.conftest import call, problem

pytestmark = pytest.mark.django_db

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "errors"}


@pytest.mark.parametrize(("method", "path", "body", "field", "location"), [
    ("POST", "/break-glass", {"user": "mark", "group": "prod-db", "reason": ""}, "reason",
     "body"),
    ("POST", "/break-glass", {"group": "prod-db", "reason": "r"}, "user", "body"),
    ("PUT", "/schedules/rota/shifts", {"shifts": [{"user": "a", "starts_at": "soon"}]},
     "shifts[0].starts_at", "body"),
    ("GET", "/grants?limit=1001", None, "limit", "query"),
    ("POST", "/grants/0/revoke", {}, "grant_id", "path"),
])
def test_invalid_input_is_400_naming_the_field_as_the_client_wrote_it(
        client, app_token, database, member, method, path, body, field, location):
    if method == "GET":
        response = client.get(f"/api/v1{path}", HTTP_AUTHORIZATION=f"Bearer {app_token}")
    else:
        response = call(client, method, path, app_token, body)
    details = problem(response, 400, "invalid-input")
    assert details["title"] == "Invalid input"
    assert details["errors"][0]["field"] == field and details["errors"][0]["in"] == location
    assert details["detail"].startswith(f"{field}: ")
    assert all(set(error) == {"field", "in", "message"} for error in details["errors"])
    assert set(details) == PROBLEM_MEMBERS  # never ninja's loc, ctx, url or input


def test_a_value_a_service_refuses_is_400_naming_its_field(client, app_token, database,
                                                           member):
    grant = break_glass(database, actor=member, reason="r")
    response = call(client, "POST", f"/grants/{grant.pk}/activity", app_token,
                    {"action": "psql", "at": "2999-01-01T00:00:00Z"})
    details = problem(response, 400, "invalid-input")
    assert details["errors"] == [{"field": "at", "in": "body", "message": "lies in the future"}]


def test_a_body_that_is_not_json_is_400(client, app_token):
    response = client.generic("POST", "/api/v1/break-glass", "{", content_type="application/json",
                              HTTP_AUTHORIZATION=f"Bearer {app_token}")
    problem(response, 400, "invalid-input")


def test_no_token_is_401_with_a_bare_bearer_challenge(client, app_token):
    response = client.get("/api/v1/grants")
    problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="breakglass"'


@pytest.mark.parametrize("header", ["Bearer bg_00000000_nope", "Basic abc"])
def test_a_wrong_token_is_401_invalid_token(client, app_token, header):
    response = client.get("/api/v1/grants", HTTP_AUTHORIZATION=header)
    problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="breakglass", error="invalid_token"'


def test_a_token_without_the_scope_is_403_naming_the_scope(client, database):
    token = create_application("reader", [Scope.ACCESS_READ], actor=None)[1]
    response = call(client, "GET", "/grants", token)
    assert problem(response, 403, "forbidden")["detail"] == (
        "This token lacks the grants:read scope.")
    assert response["WWW-Authenticate"] == (
        'Bearer realm="breakglass", error="insufficient_scope", scope="grants:read"')


def test_throttled_failures_are_429_with_retry_after(client, app_token, settings):
    settings.API_TOKEN_FAILURE_LIMIT = 2
    for _ in range(2):
        assert call(client, "GET", "/grants", "bg_deadbeef_wrong").status_code == 401
    response = call(client, "GET", "/grants", app_token)
    problem(response, 429, "too-many-requests")
    assert int(response["Retry-After"]) == 60
    assert AuditEvent.objects.filter(kind=EventKind.API_THROTTLED).count() == 1


def test_an_unknown_name_is_404(client, app_token, database):
    response = call(client, "GET", "/access", app_token, user="nobody", group="prod-db")
    assert problem(response, 404, "not-found")["detail"] == "No user named 'nobody'."


def test_a_transition_not_allowed_now_is_409(client, app_token, database, member):
    grant = break_glass(database, actor=member, reason="r")
    revoke_grant(grant, actor=None, reason="done")
    problem(call(client, "POST", f"/grants/{grant.pk}/revoke", app_token, {}), 409, "conflict")


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/grants/", "/api/v2/grants",
                                  "/api/", "/api", "/api/v1/", "/api/v1/grants/1/nope"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_any_unknown_path_under_api_is_a_json_404(client, app_token, path, method):
    response = client.generic(method, path, "{}", content_type="application/json",
                              HTTP_AUTHORIZATION=f"Bearer {app_token}")
    problem(response, 404, "not-found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/api/v1/grants", "GET"), ("GET", "/api/v1/break-glass", "POST"),
    ("PATCH", "/api/v1/requests", "GET, POST"), ("PUT", "/api/v1/groups/prod-db", "GET"),
])
def test_a_method_a_path_does_not_take_is_a_json_405_with_allow(client, app_token, method,
                                                                path, allowed):
    response = client.generic(method, path, HTTP_AUTHORIZATION=f"Bearer {app_token}")
    problem(response, 405, "method-not-allowed")
    assert sorted(response["Allow"].split(", ")) == allowed.split(", ")


def test_each_problem_type_uri_describes_its_kind(client):
    from api.errors import KINDS

    for kind, (status, title) in KINDS.items():
        response = client.get(f"/api/v1/problems/{kind}")
        assert response.status_code == 200
        assert response.json() == {"type": f"/api/v1/problems/{kind}", "title": title,
                                   "status": status}
    problem(client.get("/api/v1/problems/no-such-kind"), 404, "not-found")

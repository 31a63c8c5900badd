"""Every number the JSON API takes is bounded: out-of-range values are a 4xx JSON answer,
never a server error, and a server error the API still gives is JSON too."""

import json
import logging

import pytest

from api.main import api
from breakglass.models import Scope
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass

pytestmark = pytest.mark.django_db

FORTY_DIGITS = "1" * 40
OUT_OF_RANGE = [FORTY_DIGITS, str(2**63), "-1", "-" + FORTY_DIGITS]


@pytest.fixture
def token(db) -> str:
    return create_application("sweeper", list(Scope.values), actor=None)[1]


@pytest.fixture
def grant(database, member):
    return break_glass(database, actor=member, reason="disk full")


def _integer_parameters() -> list[tuple[str, str, str, str]]:
    """(method, path template, location, name) of every integer input of every operation,
    read from the published document so a new operation is swept without editing this test."""
    document = api.get_openapi_schema()
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if _is_integer(parameter["schema"]):
                    found.append((method.upper(), path, parameter["in"], parameter["name"]))
            found += [(method.upper(), path, "body", name)
                      for name in _integer_body_fields(document, operation)]
    return found


def _integer_body_fields(document: dict, operation: dict) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return [name for name, field in schema.get("properties", {}).items()
            if _is_integer(field)]


def _is_integer(schema: dict) -> bool:
    """An integer, or an optional one (`anyOf` integer and null, like a list's cursor)."""
    return schema.get("type") == "integer" or any(
        option.get("type") == "integer" for option in schema.get("anyOf", []))


def _send(client, token, method, path, location, name, value, grant):
    url = path.replace("{" + name + "}", value) if location == "path" else path
    url = url.replace("{grant_id}", str(grant.pk)).replace("{slug}", "prod-db")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    query = {name: value} if location == "query" else {}
    if method == "GET":
        return client.get(url, query, **headers)
    body = {"reason": "r", "action": "a"}
    if location == "body":
        body[name] = value
    url = f"{url}?{name}={value}" if query else url
    return client.generic(method, url, json.dumps(body), content_type="application/json",
                          **headers)


@pytest.mark.parametrize("cursor", [FORTY_DIGITS, str(2**63)])
def test_a_cursor_past_the_id_cap_is_a_json_client_error(client, token, grant, cursor):
    response = client.get("/api/v1/grants", {"after": cursor},
                          HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"].startswith("after")


def test_the_sweep_finds_the_integer_inputs_of_the_api():
    names = {(path, name) for _, path, _, name in _integer_parameters()}
    assert {("/api/v1/grants", "after"), ("/api/v1/grants", "limit"),
            ("/api/v1/audit", "after"), ("/api/v1/audit", "limit"),
            ("/api/v1/grants/{grant_id}/revoke", "grant_id"),
            ("/api/v1/grants/{grant_id}/activity", "grant_id"),
            ("/api/v1/requests", "after"), ("/api/v1/requests", "minutes"),
            ("/api/v1/requests/{request_id}", "request_id"), ("/api/v1/groups", "after")} <= names


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_every_integer_input_refuses_huge_and_negative_values(client, token, grant, value):
    for method, path, location, name in _integer_parameters():
        response = _send(client, token, method, path, location, name, value, grant)
        where = f"{method} {path} {name}={value}"
        assert 400 <= response.status_code < 500, where
        assert response["Content-Type"] == "application/problem+json", where
        assert response.json()["detail"], where


def test_an_unexpected_failure_is_answered_in_json(client, token, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr("breakglass.api.decide_by_name", broken)
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/access", {"user": "a", "group": "b"},
                              HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "Internal server error."
    assert "the database went away" not in response.content.decode()
    assert any("the database went away" in str(record.exc_info) for record in caplog.records)


def test_a_refusal_raised_below_the_api_keeps_its_status(client, token, monkeypatch):
    """The catch-all answers the unexpected with 500; what Django itself maps to 4xx stays
    4xx (a permission refusal is not a server error)."""
    from django.core.exceptions import PermissionDenied

    def refused(*args, **kwargs):
        raise PermissionDenied("not for you")

    monkeypatch.setattr("breakglass.api.decide_by_name", refused)
    response = client.get("/api/v1/access", {"user": "a", "group": "b"},
                          HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"


def test_a_body_over_the_upload_limit_is_a_client_error(client, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = json.dumps({"user": "a", "group": "b", "reason": "x" * 4096})
    response = client.post("/api/v1/break-glass", body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"

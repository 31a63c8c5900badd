import json

import pytest

from breakglass.models import Scope
from breakglass.services.applications import create_application


@pytest.fixture
def app_token(db) -> str:
    """A token of an application holding every scope."""
    return create_application("pager", list(Scope.values), actor=None)[1]


def call(client, method: str, path: str, token: str | None = None, body=None,
         headers: dict | None = None, **params):
    """One request to /api/v1`path`, as an application with `token` would send it."""
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value
             for name, value in (headers or {}).items()}
    if token:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if method == "GET":
        return client.get(f"/api/v1{path}", params, **extra)
    return client.generic(method, f"/api/v1{path}", json.dumps(body or {}),
                          content_type="application/json", **extra)


def problem(response, status: int, kind: str) -> dict:
    """The problem detail in `response`, checked for its status, media type and kind."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"/api/v1/problems/{kind}"
    assert body["status"] == status and body["title"] and body["detail"]
    return body

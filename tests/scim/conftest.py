"""What the SCIM tests share: an application of the directory with the scim:write scope, and
one call through the real endpoint."""

import json

import pytest
from django.test import Client

from breakglass.models import Scope
from breakglass.services.applications import create_application

SCIM_JSON = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def directory(db):
    """The identity provider's application: (application, token)."""
    return create_application("directory", [Scope.SCIM_WRITE], actor=None)


@pytest.fixture
def scim(directory):
    """scim(method, path, body=None, token=..., **query) -> response, on a fresh client
    without cookies. `raw` sends bytes as they are; `headers` adds request headers."""
    _, token = directory

    def call(method: str, path: str, body=None, *, token: str | None = token,
             raw: bytes | None = None, headers: dict | None = None, **query):
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        client = Client()
        if method == "GET":
            return client.get(f"/scim/v2{path}", query, headers=headers)
        content = raw if raw is not None else (b"" if body is None else json.dumps(body))
        return client.generic(method, f"/scim/v2{path}", content, content_type=SCIM_JSON,
                              headers=headers)

    return call


def new_user(username: str, **attributes) -> dict:
    return {"schemas": [USER_SCHEMA], "userName": username, **attributes}


def patch(*operations: dict) -> dict:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}

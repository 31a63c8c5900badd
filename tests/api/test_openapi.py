"""The OpenAPI document tells every answer an operation may give: each problem with its
media type and headers, and the Idempotency-Key header on every POST."""

import pytest

from api.idempotency import HEADER
from api.main import api

DOCUMENT = api.get_openapi_schema()
OPERATIONS = [(path, method.upper(), operation)
              for path, operations in DOCUMENT["paths"].items()
              for method, operation in operations.items()]


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS,
                         ids=[f"{m} {p}" for p, m, _ in OPERATIONS])
def test_every_operation_documents_its_problems(path, method, operation):
    responses = {int(status): response for status, response in operation["responses"].items()}
    expected = {400, 401, 403, 404, 429} | ({409} if method in {"POST", "PUT"} else set()) | (
        {422} if method == "POST" else set())
    assert expected <= set(responses)
    assert any(200 <= status < 300 for status in responses)
    for status in expected:
        content = responses[status]["content"]
        assert list(content) == ["application/problem+json"]
        assert content["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"}
    assert responses[401]["headers"]["WWW-Authenticate"]["required"] is True
    assert responses[429]["headers"]["Retry-After"]["required"] is True


@pytest.mark.parametrize(("path", "method", "operation"),
                         [op for op in OPERATIONS if op[1] == "POST"],
                         ids=[f"{m} {p}" for p, m, _ in OPERATIONS if m == "POST"])
def test_every_post_takes_an_idempotency_key(path, method, operation):
    headers = [p for p in operation["parameters"] if p["in"] == "header"]
    assert [p["name"] for p in headers] == [HEADER] and not headers[0]["required"]


def test_every_post_operation_honours_the_idempotency_key():
    """The document promises the header; each POST view must be decorated to keep it."""
    posts = [operation for path_view in _path_views() for operation in path_view.operations
             if "POST" in operation.methods]
    assert posts and all(getattr(op.view_func, "idempotent", False) for op in posts), [
        op.view_func.__name__ for op in posts if not getattr(op.view_func, "idempotent", False)]


def _path_views():
    for bound in api._get_bound_routers():
        yield from bound.path_operations.values()

"""Whatever the body, path, method or query, /scim/v2/ answers a SCIM error (400 with a
scimType for a bad body), never a 500 (QUALITY Q37)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from tests.scim.conftest import GROUP_SCHEMA, SCIM_JSON, new_user, patch

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_id(scim) -> str:
    return scim("POST", "/Users", new_user("alice")).json()["id"]


@pytest.mark.parametrize(("body", "raw", "scim_type"), [
    (None, b"not json", "invalidSyntax"),
    (None, b"[1, 2", "invalidSyntax"),
    (new_user(5), None, "invalidValue"),
    (new_user("bob", active="maybe"), None, "invalidValue"),
    (new_user("bob", emails="bob@example.com"), None, "invalidValue"),
    ({"schemas": ["urn:example:unknown"], "userName": "bob"}, None, "invalidSyntax"),
    (new_user("bob", emails=[{"value": "not-an-email"}]), None, "invalidValue"),
    (new_user("bob has spaces"), None, "invalidValue"),
    (new_user("b" * 151), None, "invalidValue"),
    (new_user("bob\x00"), None, "invalidValue"),
    (new_user("bob", title="x\x00y"), None, "invalidValue"),
])
def test_a_body_that_breaks_the_schema_is_a_400_with_a_scim_type(scim, body, raw, scim_type):
    response = scim("POST", "/Users", body, raw=raw)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == SCIM_JSON
    assert response.json()["scimType"] == scim_type
    assert not User.objects.filter(username__startswith="b").exists()


@pytest.mark.parametrize(("operation", "scim_type"), [
    ({"op": "replace", "path": "nope[[", "value": 1}, "invalidPath"),
    ({"op": "replace", "path": "name.noSuchPart", "value": "x"}, "invalidPath"),
    ({"op": "frobnicate", "path": "active", "value": False}, "invalidValue"),
    ({"op": "replace", "path": "active", "value": "maybe"}, "invalidValue"),
    ({"op": "replace", "path": "userName", "value": ["a", "b"]}, "invalidValue"),
    ({"op": "add", "path": "groups", "value": [{"value": "1"}]}, "mutability"),
])
def test_a_bad_patch_is_a_400_with_a_scim_type_and_changes_nothing(scim, alice_id, operation,
                                                                   scim_type):
    response = scim("PATCH", f"/Users/{alice_id}", patch(operation))
    assert response.status_code == 400, response.content
    assert response.json()["scimType"] == scim_type
    assert User.objects.get(pk=alice_id).is_active


@pytest.mark.parametrize(("query", "status"), [
    ({"count": "1" + "0" * 30}, 200),
    ({"startIndex": "9" * 30}, 200),
    ({"count": "-5"}, 200),
    ({"count": "abc"}, 400),
    ({"filter": "userName eq"}, 400),
    ({"filter": 'noSuchAttribute eq "x"'}, 400),
    ({"sortBy": "noSuchAttribute"}, 400),
])
def test_counts_indexes_and_filters_are_bounded_or_refused(scim, alice_id, query, status):
    response = scim("GET", "/Users", **query)
    assert response.status_code == status, response.content
    if status == 400:
        assert response.json()["scimType"]


def test_a_page_holds_at_most_200_resources(scim):
    User.objects.bulk_create(User(username=f"user{n}") for n in range(205))
    page = scim("GET", "/Users", count="1000").json()
    assert (page["totalResults"], page["itemsPerPage"], len(page["Resources"])) == (
        205, 200, 200)


def test_a_huge_body_is_refused_unread(scim):
    response = scim("POST", "/Users", raw=b"{" + b" " * (600 * 1024) + b"}")
    assert response.status_code == 413
    assert response.json()["status"] == "413"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/NoSuchThing", 404),
    ("GET", "/Users/abc", 404),
    ("GET", "/Users/" + "9" * 30, 404),
    ("DELETE", "/Users", 405),
    ("PUT", "/Groups", 405),
    ("POST", "/Bulk", 501),
    ("GET", "/Me", 501),
])
def test_other_paths_and_methods_are_scim_errors(scim, method, path, status):
    response = scim(method, path, {} if method != "GET" else None)
    assert response.status_code == status
    assert response["Content-Type"] == SCIM_JSON
    assert response.json()["status"] == str(status)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=30))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["userName", "active", "name", "emails", "value",
                                     "displayName", "members", "op", "path", "Operations",
                                     "schemas", "x"]) | st.text(max_size=8),
                    inner, max_size=5)), max_leaves=12)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON, method=st.sampled_from(["POST /Users", "PUT /Users/{id}",
                                          "PATCH /Users/{id}", "POST /Groups",
                                          "POST /Users/.search"]))
def test_generated_bodies_never_cause_a_500(scim, alice_id, body, method):
    verb, path = method.split(" ")
    response = scim(verb, path.format(id=alice_id), raw=json.dumps(body).encode())
    assert response.status_code < 500, response.content
    assert response["Content-Type"] == SCIM_JSON


PATCH_PATHS = st.sampled_from([
    "active", "userName", "name", "name.givenName", "emails", 'emails[type eq "work"].value',
    "externalId", "title", "members", 'members[value eq "1"]', "displayName", "meta", "id",
    "groups", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
]) | st.text(max_size=20)
OPERATIONS = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace"])},
    optional={"path": PATCH_PATHS, "value": JSON}), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, on_user=st.booleans())
def test_generated_patches_never_cause_a_500(scim, alice_id, operations, on_user):
    group = scim("GET", "/Groups").json()["Resources"]
    if not group:
        group = [scim("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "g",
                                          "members": [{"value": alice_id}]}).json()]
    path = f"/Users/{alice_id}" if on_user else f"/Groups/{group[0]['id']}"
    response = scim("PATCH", path, patch(*operations))
    assert response.status_code < 500, (operations, response.content)

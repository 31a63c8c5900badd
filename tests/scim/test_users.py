"""SCIM Users are accounts: created, found, changed and deleted by the directory through
/scim/v2/Users, each write audited with the application as the actor."""

import pytest
from django.db import connection

from accounts.models import User
from audit.catalogue import EventKind
from audit.models import AuditEvent
from tests.conftest import make_user
from tests.scim.conftest import SCIM_JSON, USER_SCHEMA, new_user, patch

pytestmark = pytest.mark.django_db

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def created(scim, username: str = "alice.smith", **attributes) -> tuple[User, dict]:
    body = new_user(username, name={"givenName": "Alice", "familyName": "Smith"},
                    emails=[{"value": "alice@example.com", "type": "work", "primary": True}],
                    **attributes)
    response = scim("POST", "/Users", body)
    assert response.status_code == 201, response.content
    return User.objects.get(pk=response.json()["id"]), response.json()


def events(kind: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=kind).order_by("sequence"))


def test_the_directory_creates_an_account_that_signs_in_only_through_single_sign_on(
        scim, directory):
    application, _ = directory
    user, body = created(scim, externalId="00u1", nickName="Ali",
                         **{"schemas": [USER_SCHEMA, ENTERPRISE],
                            ENTERPRISE: {"employeeNumber": "42"}})
    assert (user.username, user.first_name, user.last_name, user.email, user.is_active) == (
        "alice.smith", "Alice", "Smith", "alice@example.com", True)
    assert not user.has_usable_password()
    assert not (user.is_staff or user.is_superuser or user.may_use_local_login)
    assert not user.groups.exists() and not user.user_permissions.exists()
    assert body["externalId"] == "00u1" and body["nickName"] == "Ali"
    assert body[ENTERPRISE] == {"employeeNumber": "42"}
    assert body["meta"]["location"] == f"http://testserver/scim/v2/Users/{user.pk}"
    event = events(EventKind.SCIM_USER_CREATED)[0]
    assert (event.actor_type, event.actor_id, event.target_id) == (
        "application", str(application.pk), str(user.pk))
    assert event.data == {"username": "alice.smith", "first_name": "Alice",
                          "last_name": "Smith", "email": "alice@example.com", "active": True,
                          "external_id": "00u1"}


def test_answers_are_scim_json(scim):
    _, body = created(scim)
    response = scim("GET", f"/Users/{body['id']}")
    assert response.status_code == 200
    assert response["Content-Type"] == SCIM_JSON
    assert response["ETag"] == body["meta"]["version"]


def test_a_filter_on_the_username_finds_the_account_whatever_its_case(scim, member):
    user, _ = created(scim)
    found = scim("GET", "/Users", filter='userName eq "Alice.Smith"').json()
    assert found["totalResults"] == 1
    assert found["Resources"][0]["id"] == str(user.pk)
    assert scim("GET", "/Users", filter='userName eq "nobody"').json()["totalResults"] == 0


def test_accounts_made_in_breakglass_are_listed_with_their_own_data(scim, member):
    found = scim("GET", "/Users", filter=f'userName eq "{member.username}"').json()
    resource = found["Resources"][0]
    assert (resource["active"], resource["emails"]) == (
        True, [{"value": member.email, "primary": True}])
    assert "password" not in resource


def test_patch_replaces_names_and_records_what_changed(scim):
    user, _ = created(scim)
    response = scim("PATCH", f"/Users/{user.pk}", patch(
        {"op": "replace", "path": "name.familyName", "value": "Jones"},
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "aj@example.com"}))
    assert response.status_code in {200, 204}, response.content
    user.refresh_from_db()
    assert (user.last_name, user.email) == ("Jones", "aj@example.com")
    event = events(EventKind.SCIM_USER_UPDATED)[0]
    assert event.data["changes"] == {"last_name": ["Smith", "Jones"],
                                     "email": ["alice@example.com", "aj@example.com"]}
    assert event.data["attributes_changed"] == ["emails"]
    assert event.actor_type == "application" and event.target_id == str(user.pk)


def test_put_replaces_the_account_and_keeps_what_it_does_not_map(scim):
    user, _ = created(scim)
    response = scim("PUT", f"/Users/{user.pk}", new_user(
        "alice.jones", name={"givenName": "Alice", "familyName": "Jones", "middleName": "B"},
        emails=[{"value": "alice.jones@example.com", "primary": True}], title="SRE",
        active=True))
    assert response.status_code == 200, response.content
    user.refresh_from_db()
    assert (user.username, user.last_name, user.email) == (
        "alice.jones", "Jones", "alice.jones@example.com")
    body = scim("GET", f"/Users/{user.pk}").json()
    assert body["name"] == {"givenName": "Alice", "familyName": "Jones", "middleName": "B"}
    assert body["title"] == "SRE"
    changes = events(EventKind.SCIM_USER_UPDATED)[0].data["changes"]
    assert set(changes) == {"username", "last_name", "email"}


def test_a_change_that_changes_nothing_records_nothing(scim):
    user, body = created(scim)
    again = {key: value for key, value in body.items() if key not in {"id", "meta"}}
    assert scim("PUT", f"/Users/{user.pk}", again).status_code == 200
    assert events(EventKind.SCIM_USER_UPDATED) == []


def test_an_administrators_change_shows_in_the_resource_and_its_version(scim):
    user, body = created(scim)
    user.email = "changed@example.com"
    user.save(update_fields=["email"])
    now = scim("GET", f"/Users/{user.pk}").json()
    assert now["emails"][0]["value"] == "changed@example.com"
    assert now["meta"]["version"] != body["meta"]["version"]


def test_a_change_made_against_a_stale_version_is_refused_with_412(scim):
    user, body = created(scim)
    scim("PATCH", f"/Users/{user.pk}", patch({"op": "replace", "path": "title", "value": "x"}))
    response = scim("PATCH", f"/Users/{user.pk}",
                    patch({"op": "replace", "path": "title", "value": "y"}),
                    headers={"If-Match": body["meta"]["version"]})
    assert response.status_code == 412
    user.scim_resource.refresh_from_db()
    assert user.scim_resource.attributes["title"] == "x"


def test_an_existing_username_is_refused_never_taken_over(scim, member):
    response = scim("POST", "/Users", new_user(member.username.upper(),
                                               emails=[{"value": "evil@example.com"}]))
    assert response.status_code == 409
    assert response.json()["scimType"] == "uniqueness"
    member.refresh_from_db()
    assert member.email == "mark@example.com" and member.has_usable_password()
    assert events(EventKind.SCIM_USER_CREATED) == []


def test_renaming_onto_another_accounts_username_is_refused(scim, member):
    user, _ = created(scim)
    response = scim("PATCH", f"/Users/{user.pk}",
                    patch({"op": "replace", "path": "userName", "value": member.username}))
    assert response.status_code == 409 and response.json()["scimType"] == "uniqueness"


@pytest.mark.parametrize("role", ["staff", "superuser", "local login"])
def test_administrators_and_local_login_accounts_cannot_be_changed(scim, role):
    fields = {"staff": {"is_staff": True}, "superuser": {"is_superuser": True},
              "local login": {"may_use_local_login": True}}[role]
    user = make_user("keeper", **fields)
    path = f"/Users/{user.pk}"
    assert scim("GET", path).status_code == 200
    attempts = [
        scim("PATCH", path, patch({"op": "replace", "path": "active", "value": False})),
        scim("PATCH", path, patch({"op": "replace", "path": "userName", "value": "x"})),
        scim("PUT", path, new_user("keeper", active=False)),
        scim("DELETE", path),
    ]
    assert [attempt.status_code for attempt in attempts] == [403, 403, 403, 403]
    user.refresh_from_db()
    assert user.is_active and user.username == "keeper"
    assert not AuditEvent.objects.filter(kind__startswith="scim.").exists()
    assert not AuditEvent.objects.filter(kind=EventKind.ACCOUNT_DEPROVISIONED).exists()


def test_delete_deactivates_keeps_the_row_and_then_answers_404(scim):
    user, _ = created(scim)
    response = scim("DELETE", f"/Users/{user.pk}")
    assert response.status_code == 204
    user.refresh_from_db()
    assert not user.is_active
    assert scim("GET", f"/Users/{user.pk}").status_code == 404
    assert scim("DELETE", f"/Users/{user.pk}").status_code == 404
    assert scim("GET", "/Users", filter='userName eq "alice.smith"').json()["totalResults"] == 0
    event = events(EventKind.ACCOUNT_DEPROVISIONED)[0]
    assert event.target_id == str(user.pk)
    assert (event.data["deleted"], event.data["was_active"]) == (True, True)
    # Its username stays taken: a new account of that name is an administrator's decision.
    assert scim("POST", "/Users", new_user("alice.smith")).status_code == 409


def test_reactivation_is_audited(scim):
    user, _ = created(scim)
    scim("PATCH", f"/Users/{user.pk}", patch({"op": "replace", "path": "active", "value": False}))
    response = scim("PATCH", f"/Users/{user.pk}",
                    patch({"op": "replace", "path": "active", "value": True}))
    assert response.status_code in {200, 204}
    user.refresh_from_db()
    assert user.is_active
    assert events(EventKind.SCIM_USER_UPDATED)[-1].data["changes"] == {
        "is_active": [False, True]}


def test_groups_are_read_only_on_the_user(scim):
    user, _ = created(scim)
    response = scim("PATCH", f"/Users/{user.pk}",
                    patch({"op": "add", "path": "groups", "value": [{"value": "1"}]}))
    assert response.status_code == 400 and response.json()["scimType"] == "mutability"


@pytest.mark.parametrize("attribute", [{"password": "hunter2-sentinel"},
                                       {"roles": [{"value": "admin"}]},
                                       {"entitlements": [{"value": "admin"}]},
                                       {"is_staff": True}])
def test_passwords_roles_and_staff_status_are_never_accepted(scim, attribute):
    response = scim("POST", "/Users", new_user("mallory", **attribute))
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidSyntax"
    assert not User.objects.filter(username="mallory").exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM scim_scimresource")
        assert cursor.fetchone() == (0,)


def test_an_account_locked_in_breakglass_is_not_reactivated_by_the_directory(scim):
    """An abort link (or an administrator) deactivated the account pending review; the
    directory, which still shows the person as active, pushes `active: true` on its next
    sync: refused, until an administrator decides."""
    made_here = make_user("held")
    made_here.is_active = False  # what an abort link leaves
    made_here.save(update_fields=["is_active"])
    response = scim("PATCH", f"/Users/{made_here.pk}",
                    patch({"op": "replace", "path": "active", "value": True}))
    assert response.status_code == 403
    made_here.refresh_from_db()
    assert not made_here.is_active
    assert not events(EventKind.SCIM_USER_UPDATED)

"""SCIM Groups are directory groups, never django.contrib.auth groups (roles): created,
changed and deleted by the directory, each write audited."""

import pytest
from django.contrib.auth.models import Group as AuthGroup

from accounts.models import SECURITY_REVIEWERS_GROUP, DirectoryGroup
from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Group
from tests.conftest import make_user
from tests.scim.conftest import GROUP_SCHEMA, patch

pytestmark = pytest.mark.django_db


def new_group(name: str, *members, **attributes) -> dict:
    return {"schemas": [GROUP_SCHEMA], "displayName": name,
            "members": [{"value": str(user.pk)} for user in members], **attributes}


def created(scim, name: str = "SRE on call", *members, **attributes) -> DirectoryGroup:
    response = scim("POST", "/Groups", new_group(name, *members, **attributes))
    assert response.status_code == 201, response.content
    return DirectoryGroup.objects.get(pk=response.json()["id"])


def events(kind: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=kind).order_by("sequence"))


def test_the_directory_creates_a_directory_group_with_members(scim, directory, member,
                                                              outsider):
    group = created(scim, "SRE on call", member, outsider, externalId="g-1")
    assert set(group.members.all()) == {member, outsider}
    assert group.external_id == "g-1"
    event = events(EventKind.SCIM_GROUP_CREATED)[0]
    assert (event.actor_type, event.actor_id, event.target_id) == (
        "application", str(directory[0].pk), str(group.pk))
    assert event.data == {"display_name": "SRE on call", "external_id": "g-1",
                          "members": ["mark", "oscar"]}
    body = scim("GET", f"/Groups/{group.pk}").json()
    assert {m["value"] for m in body["members"]} == {str(member.pk), str(outsider.pk)}
    user = scim("GET", f"/Users/{member.pk}").json()
    assert user["groups"][0]["value"] == str(group.pk)


def test_patch_adds_and_removes_members_and_records_who(scim, member, outsider, owner):
    group = created(scim, "SRE on call", member)
    added = scim("PATCH", f"/Groups/{group.pk}", patch(
        {"op": "add", "path": "members", "value": [{"value": str(outsider.pk)},
                                                   {"value": str(owner.pk)}]}))
    assert added.status_code in {200, 204}, added.content
    removed = scim("PATCH", f"/Groups/{group.pk}", patch(
        {"op": "remove", "path": f'members[value eq "{member.pk}"]'}))
    assert removed.status_code in {200, 204}, removed.content
    assert set(group.members.all()) == {outsider, owner}
    first, second = events(EventKind.SCIM_GROUP_UPDATED)
    assert (first.data["added"], first.data["removed"]) == (["olivia", "oscar"], [])
    assert (second.data["added"], second.data["removed"]) == ([], ["mark"])


def test_patch_renames_the_group(scim):
    group = created(scim)
    response = scim("PATCH", f"/Groups/{group.pk}", patch(
        {"op": "replace", "path": "displayName", "value": "SRE primary"}))
    assert response.status_code in {200, 204}
    group.refresh_from_db()
    assert group.display_name == "SRE primary"
    assert events(EventKind.SCIM_GROUP_UPDATED)[0].data["changes"] == {
        "display_name": ["SRE on call", "SRE primary"]}


def test_a_taken_display_name_is_a_409(scim):
    created(scim, "SRE on call")
    response = scim("POST", "/Groups", new_group("sre ON CALL"))
    assert response.status_code == 409 and response.json()["scimType"] == "uniqueness"


@pytest.mark.parametrize("value", ["999999", "abc", "-1", "9" * 40])
def test_an_unknown_member_is_refused_never_skipped(scim, member, value):
    group = created(scim, "SRE on call", member)
    response = scim("PATCH", f"/Groups/{group.pk}", patch(
        {"op": "add", "path": "members", "value": [{"value": value}]}))
    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
    assert list(group.members.all()) == [member]
    assert events(EventKind.SCIM_GROUP_UPDATED) == []


def test_groups_do_not_nest(scim):
    inner = created(scim, "inner")
    response = scim("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "outer",
                                        "members": [{"value": str(inner.pk), "type": "Group"}]})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"


def test_delete_removes_the_group_and_is_audited(scim, member):
    group = created(scim, "SRE on call", member)
    assert scim("DELETE", f"/Groups/{group.pk}").status_code == 204
    assert not DirectoryGroup.objects.filter(pk=group.pk).exists()
    assert scim("GET", f"/Groups/{group.pk}").status_code == 404
    event = events(EventKind.SCIM_GROUP_DELETED)[0]
    assert event.data["members"] == ["mark"] and event.data["kept_for_catalog_groups"] == []


def test_deleting_a_group_a_catalog_group_uses_empties_and_hides_it(scim, member, database):
    group = created(scim, "SRE on call", member)
    database.members_from_directory_group = group
    database.save()
    assert scim("DELETE", f"/Groups/{group.pk}").status_code == 204
    group.refresh_from_db()
    assert not group.members.exists()
    assert Group.objects.get(pk=database.pk).members_from_directory_group == group
    assert scim("GET", f"/Groups/{group.pk}").status_code == 404
    assert scim("GET", "/Groups").json()["totalResults"] == 0
    assert events(EventKind.SCIM_GROUP_DELETED)[0].data["kept_for_catalog_groups"] == [
        "prod-db"]


def test_a_group_named_like_a_role_gives_no_role(scim, member, reviewer):
    reviewers = AuthGroup.objects.get(name=SECURITY_REVIEWERS_GROUP)
    group = created(scim, SECURITY_REVIEWERS_GROUP, member)
    assert group.members.get() == member
    assert list(reviewers.user_set.all()) == [reviewer]
    member.refresh_from_db()
    assert not member.is_security_reviewer and not member.groups.exists()
    scim("DELETE", f"/Groups/{group.pk}")
    assert list(reviewers.user_set.all()) == [reviewer]


def test_administrators_and_local_login_accounts_are_kept_out_of_directory_groups(scim,
                                                                                 member):
    """A directory group can give standing access: the directory may neither put an
    administrator or local-login account in one nor take one out."""
    admin = make_user("root", is_staff=True, is_superuser=True)
    local = make_user("glass", may_use_local_login=True)
    assert scim("POST", "/Groups", new_group("Admins", admin)).status_code == 403
    group = created(scim, "Platform", member)
    add_local = patch({"op": "add", "path": "members", "value": [{"value": str(local.pk)}]})
    assert scim("PATCH", f"/Groups/{group.pk}", add_local).status_code == 403
    group.members.add(local)  # put there in Breakglass
    remove_local = patch({"op": "remove", "path": f'members[value eq "{local.pk}"]'})
    assert scim("PATCH", f"/Groups/{group.pk}", remove_local).status_code == 403
    assert set(group.members.all()) == {member, local}


def test_a_hidden_groups_name_is_free_again(scim, member, database):
    group = created(scim, "ops", member)
    database.members_from_directory_group = group
    database.save(update_fields=["members_from_directory_group"])
    assert scim("DELETE", f"/Groups/{group.pk}").status_code == 204
    assert created(scim, "ops", member).display_name == "ops"


def test_only_ascii_digits_name_a_member(scim, member):
    eastern_arabic = "".join(chr(0x0660 + int(digit)) for digit in str(member.pk))
    response = scim("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "x",
                                        "members": [{"value": eastern_arabic}]})
    assert response.status_code == 400

"""A person the directory deactivates or deletes loses every grant and every session in the
same transaction (QUALITY Q45); if any part fails, nothing happens."""

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import DatabaseError
from django.test import Client
from django.urls import reverse

from accounts.deprovisioning import deprovision
from accounts.models import User
from audit.catalogue import EventKind
from audit.models import AuditEvent, ChainHead, Delivery
from breakglass.access import decide
from breakglass.models import AccessRequest, Grant, Group
from breakglass.services.break_glass import break_glass
from breakglass.services.errors import GrantError
from breakglass.services.grants import abort_grant
from breakglass.services.requests import approve_request, request_access
from tests.audit.helpers import triggers_lifted
from tests.conftest import make_user, sign_in
from tests.scim.conftest import new_user, patch

pytestmark = pytest.mark.django_db

DEACTIVATE = patch({"op": "replace", "path": "active", "value": False})


@pytest.fixture
def alice(database) -> User:
    """alice may break glass on prod-db."""
    user = make_user("alice")
    database.break_glass_users.add(user)
    return user


def sessions_of(user: User) -> int:
    return sum(str(session.get_decoded().get(SESSION_KEY)) == str(user.pk)
               for session in Session.objects.all())


def is_signed_in(client: Client) -> bool:
    return client.get(reverse("breakglass:my-access")).status_code == 200


def test_deactivation_over_scim_ends_her_grant_and_her_session(scim, directory, alice,
                                                               database, member, reviewer):
    alice_browser = sign_in(Client(), alice)
    mark_browser = sign_in(Client(), member)
    grant = break_glass(database, actor=alice, reason="database down")
    assert is_signed_in(alice_browser) and decide(alice, database).allowed

    response = scim("PATCH", f"/Users/{alice.pk}", DEACTIVATE)

    assert response.status_code in {200, 204}, response.content
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    alice.refresh_from_db()
    assert not alice.is_active and not decide(alice, database).allowed
    assert sessions_of(alice) == 0
    page = alice_browser.get(reverse("breakglass:my-access"))
    assert page.status_code == 302 and page["Location"].startswith(reverse("accounts:login"))
    assert is_signed_in(mark_browser)
    event = AuditEvent.objects.get(kind=EventKind.ACCOUNT_DEPROVISIONED)
    assert (event.actor_type, event.actor_id, event.target_id) == (
        "application", str(directory[0].pk), str(alice.pk))
    assert event.data == {"username": "alice", "was_active": True, "deleted": False,
                          "grants_ended": 1, "sessions_ended": 1, "requests_withdrawn": 0,
                          "directory_groups_left": []}
    assert not AuditEvent.objects.filter(kind=EventKind.SCIM_USER_UPDATED).exists()
    revoked = AuditEvent.objects.get(kind=EventKind.GRANT_REVOKED)
    assert revoked.data["cause"] == {"deprovisioned": event.sequence}
    assert set(Delivery.objects.filter(event=event).values_list("channel", "recipient")) == {
        ("email", reviewer.email)}


def test_her_pending_requests_are_withdrawn_so_nobody_approves_them(scim, alice, database,
                                                                     owner):
    staging = Group.objects.create(name="Staging", slug="staging", requestable=True)
    staging.owners.add(owner)
    waiting = request_access(staging, actor=alice, minutes=60, reason="deploy the fix")
    assert waiting.status == AccessRequest.Status.PENDING

    response = scim("PATCH", f"/Users/{alice.pk}", DEACTIVATE)

    assert response.status_code in {200, 204}, response.content
    waiting.refresh_from_db()
    waiting.grant.refresh_from_db()
    assert waiting.status == AccessRequest.Status.WITHDRAWN
    assert waiting.grant.status == Grant.Status.DENIED
    event = AuditEvent.objects.get(kind=EventKind.ACCOUNT_DEPROVISIONED)
    assert event.data["requests_withdrawn"] == 1
    withdrawn = AuditEvent.objects.get(kind=EventKind.REQUEST_WITHDRAWN)
    assert withdrawn.data["cause"] == {"deprovisioned": event.sequence}
    with pytest.raises(GrantError):
        approve_request(waiting, actor=owner)


def test_put_with_active_false_deprovisions_too(scim, alice, database):
    grant = break_glass(database, actor=alice, reason="database down")
    response = scim("PUT", f"/Users/{alice.pk}", new_user("alice", active=False))
    assert response.status_code == 200, response.content
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert AuditEvent.objects.filter(kind=EventKind.ACCOUNT_DEPROVISIONED).count() == 1


def test_reactivation_lets_her_sign_in_again_but_gives_back_no_grant(scim, alice, database):
    grant = break_glass(database, actor=alice, reason="database down")
    scim("PATCH", f"/Users/{alice.pk}", DEACTIVATE)
    response = scim("PATCH", f"/Users/{alice.pk}",
                    patch({"op": "replace", "path": "active", "value": True}))
    assert response.status_code in {200, 204}
    alice.refresh_from_db()
    assert alice.is_active
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert not Grant.objects.active().filter(user=alice).exists()
    assert not decide(alice, database).allowed
    assert is_signed_in(sign_in(Client(), alice))
    reactivated = AuditEvent.objects.filter(kind=EventKind.SCIM_USER_UPDATED).get()
    assert reactivated.data["changes"] == {"is_active": [False, True]}


def test_deleting_an_account_an_abort_link_locked_ends_its_other_grants(scim, alice, database,
                                                                       owner, reviewer):
    other = Group.objects.create(name="Payments", slug="payments")
    other.break_glass_users.add(alice)
    first = break_glass(database, actor=alice, reason="database down")
    second = break_glass(other, actor=alice, reason="payments down")
    abort_grant(first, actor=reviewer)
    alice.refresh_from_db()
    assert not alice.is_active
    assert scim("DELETE", f"/Users/{alice.pk}").status_code == 204
    second.refresh_from_db()
    assert second.status == Grant.Status.REVOKED
    event = AuditEvent.objects.get(kind=EventKind.ACCOUNT_DEPROVISIONED)
    assert event.data | {"sessions_ended": 0} == {
        "username": "alice", "was_active": False, "deleted": True, "grants_ended": 1,
        "sessions_ended": 0, "requests_withdrawn": 0, "directory_groups_left": []}


def test_deprovisioning_someone_with_nothing_still_records_and_alerts(alice, reviewer):
    deprovision(alice, actor=None, reason="left the company")
    alice.refresh_from_db()
    assert not alice.is_active
    event = AuditEvent.objects.get(kind=EventKind.ACCOUNT_DEPROVISIONED)
    assert (event.actor_type, event.reason) == ("system", "left the company")
    assert (event.data["grants_ended"], event.data["sessions_ended"]) == (0, 0)
    assert Delivery.objects.filter(event=event, recipient=reviewer.email).exists()


def nothing_happened(alice: User, grant: Grant) -> None:
    alice.refresh_from_db()
    grant.refresh_from_db()
    assert alice.is_active and grant.status == Grant.Status.ACTIVE
    assert sessions_of(alice) == 1
    assert not AuditEvent.objects.filter(kind=EventKind.ACCOUNT_DEPROVISIONED).exists()
    assert not AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED).exists()


@pytest.mark.django_db(transaction=True)
def test_a_failing_session_deletion_undoes_the_whole_deprovisioning(scim, alice, database,
                                                                    monkeypatch):
    sign_in(Client(), alice)
    grant = break_glass(database, actor=alice, reason="database down")

    def unreachable(self, session_key=None):
        raise DatabaseError("the session table is unreachable")

    monkeypatch.setattr(SessionStore, "delete", unreachable)
    with pytest.raises(DatabaseError):
        scim("PATCH", f"/Users/{alice.pk}", DEACTIVATE)
    nothing_happened(alice, grant)


@pytest.mark.django_db(transaction=True)
def test_an_audit_trail_that_cannot_be_written_is_a_503_and_changes_nothing(scim, alice,
                                                                            database):
    sign_in(Client(), alice)
    grant = break_glass(database, actor=alice, reason="database down")
    with triggers_lifted():  # the database itself refuses to lose the head
        ChainHead.objects.all().delete()

    response = scim("PATCH", f"/Users/{alice.pk}", DEACTIVATE)

    assert response.status_code == 503
    assert response.json()["status"] == "503"
    nothing_happened(alice, grant)


def test_entra_ids_spelling_of_a_deactivation_deprovisions_too(scim, alice, database):
    """Microsoft Entra ID sends the operation capitalised and the boolean as a string."""
    grant = break_glass(database, actor=alice, reason="database down")
    response = scim("PATCH", f"/Users/{alice.pk}",
                    patch({"op": "Replace", "path": "active", "value": "False"}))
    assert response.status_code in {200, 204}, response.content
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    alice.refresh_from_db()
    assert not alice.is_active


def test_deprovisioning_takes_the_person_out_of_every_directory_group(scim, alice):
    from accounts.models import DirectoryGroup

    platform = DirectoryGroup.objects.create(display_name="Platform")
    platform.members.add(alice)
    assert scim("PATCH", f"/Users/{alice.pk}", DEACTIVATE).status_code in {200, 204}
    assert not platform.members.exists()
    event = AuditEvent.objects.get(kind=EventKind.ACCOUNT_DEPROVISIONED)
    assert event.data["directory_groups_left"] == ["Platform"]

"""Access requests, groups and owners through the API: the same services as the pages, so
the same refusals; every event names the person and, in `data.via`, the application."""

import pytest

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import AccessRequest, Grant
from tests.api.conftest import call, problem
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def group(database, owner, bob):
    """prod-db taking requests, approved by two of its owners (olivia and bob)."""
    database.owners.add(bob)
    database.requestable = True
    database.approvals_needed = 2
    database.save()
    return database


def ask(client, token, user: str, minutes: int = 60, **fields):
    return call(client, "POST", "/requests", token,
                {"user": user, "group": "prod-db", "minutes": minutes, "reason": "deploy",
                 **fields})


def decide(client, token, request_id: int, verb: str, as_user: str, **fields):
    return call(client, "POST", f"/requests/{request_id}/{verb}", token,
                {"as_user": as_user, **fields})


def test_a_request_approved_by_two_owners_gives_access(client, app_token, group, member):
    created = ask(client, app_token, member.username)
    assert created.status_code == 201
    body = created.json()
    assert (body["status"], body["user"], body["group"], body["approvals_needed"]) == (
        "pending", "mark", "prod-db", 2)
    first = decide(client, app_token, body["id"], "approve", "olivia", comment="ok")
    assert first.status_code == 200 and first.json()["status"] == "pending"
    assert [a["user"] for a in first.json()["approvals"]] == ["olivia"]
    second = decide(client, app_token, body["id"], "approve", "bob").json()
    assert second["status"] == "approved" and second["decided_by"] == "bob"
    assert Grant.objects.get(pk=body["grant_id"]).status == Grant.Status.ACTIVE
    access = call(client, "GET", "/access", app_token, user="mark", group="prod-db").json()
    assert access["allowed"] and access["grant_id"] == body["grant_id"]
    events = AuditEvent.objects.filter(kind__in=[
        EventKind.REQUEST_CREATED, EventKind.REQUEST_APPROVAL, EventKind.REQUEST_APPROVED])
    assert [(e.kind, e.actor_label) for e in events.order_by("sequence")] == [
        (EventKind.REQUEST_CREATED, "mark"), (EventKind.REQUEST_APPROVAL, "olivia"),
        (EventKind.REQUEST_APPROVED, "bob")]
    assert {e.data["via"] for e in events} == {"api application pager"}


def test_nobody_approves_their_own_request_and_each_owner_approves_once(
        client, app_token, group, owner):
    request_id = ask(client, app_token, owner.username).json()["id"]
    own = decide(client, app_token, request_id, "approve", "olivia")
    assert "own request" in problem(own, 403, "forbidden")["detail"]
    assert decide(client, app_token, request_id, "approve", "bob").status_code == 200
    problem(decide(client, app_token, request_id, "approve", "bob"), 409, "conflict")
    assert AccessRequest.objects.get(pk=request_id).status == AccessRequest.Status.PENDING


def test_only_owners_decide(client, app_token, group, member, outsider):
    request_id = ask(client, app_token, member.username).json()["id"]
    problem(decide(client, app_token, request_id, "approve", outsider.username), 403,
            "forbidden")
    problem(decide(client, app_token, request_id, "deny", outsider.username, comment="no"),
            403, "forbidden")
    missing = decide(client, app_token, request_id, "approve", "nobody")
    assert problem(missing, 404, "not-found")["errors"][0]["field"] == "as_user"


def test_a_denial_needs_a_comment_and_ends_the_waiting_grant(client, app_token, group, member):
    body = ask(client, app_token, member.username).json()
    blank = decide(client, app_token, body["id"], "deny", "olivia", comment="   ")
    assert problem(blank, 400, "invalid-input")["errors"][0]["field"] == "comment"
    absent = decide(client, app_token, body["id"], "deny", "olivia")
    assert problem(absent, 400, "invalid-input")["errors"][0]["field"] == "comment"
    denied = decide(client, app_token, body["id"], "deny", "olivia", comment="not today")
    assert denied.json()["status"] == "denied" and denied.json()["comment"] == "not today"
    assert Grant.objects.get(pk=body["grant_id"]).status == Grant.Status.DENIED
    problem(decide(client, app_token, body["id"], "approve", "bob"), 409, "conflict")


def test_only_the_requester_withdraws(client, app_token, group, member):
    request_id = ask(client, app_token, member.username).json()["id"]
    problem(decide(client, app_token, request_id, "withdraw", "olivia"), 403, "forbidden")
    withdrawn = decide(client, app_token, request_id, "withdraw", "mark", reason="fixed")
    assert withdrawn.json()["status"] == "withdrawn"


def test_the_group_rules_apply_to_api_requests(client, app_token, group, member, outsider):
    too_long = ask(client, app_token, member.username, minutes=group.request_max_minutes + 1)
    assert problem(too_long, 400, "invalid-input")["errors"][0]["field"] == "minutes"
    group.requestable = False
    group.save()
    problem(ask(client, app_token, outsider.username), 403, "forbidden")
    problem(ask(client, app_token, "nobody"), 404, "not-found")
    assert not AccessRequest.objects.exists()


def test_requests_are_listed_filtered_and_read_one_by_one(client, app_token, group, member,
                                                          outsider):
    mine = ask(client, app_token, member.username).json()["id"]
    theirs = ask(client, app_token, outsider.username).json()["id"]
    decide(client, app_token, theirs, "withdraw", outsider.username)

    def ids(**query):
        return [item["id"] for item in call(client, "GET", "/requests", app_token,
                                            **query).json()["items"]]

    assert ids() == [theirs, mine]
    assert ids(status="pending") == [mine] and ids(status="withdrawn") == [theirs]
    assert ids(user="oscar") == [theirs] and ids(group="no-such-group") == []
    assert ids(awaiting="olivia") == [mine]
    decide(client, app_token, mine, "approve", "olivia")
    assert ids(awaiting="olivia") == [] and ids(awaiting="bob") == [mine]
    one = call(client, "GET", f"/requests/{mine}", app_token).json()
    assert one["id"] == mine and [a["user"] for a in one["approvals"]] == ["olivia"]
    problem(call(client, "GET", "/requests/999999", app_token), 404, "not-found")


def test_a_group_is_read_with_its_owners_and_request_settings(client, app_token, group):
    body = call(client, "GET", "/groups/prod-db", app_token).json()
    assert body["owners"] == ["bob", "olivia"]
    assert (body["requestable"], body["approvals_needed"], body["break_glass_minutes"]) == (
        True, 2, 12 * 60)
    problem(call(client, "GET", "/groups/nope", app_token), 404, "not-found")

"""Clicks in Slack act through the same services as the pages: the same refusals with the same
words, the same audit trail (each event saying `via: slack`), and nothing done twice."""

import time

import pytest
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import AccessRequest, Approval, Grant
from breakglass.services.break_glass import break_glass
from breakglass.services.requests import request_access
from tests.chatops.conftest import (
    CHANNEL,
    click,
    ephemeral_texts,
    link,
    post_signed,
    submission,
)

pytestmark = pytest.mark.django_db


def ask(group, user, **fields) -> AccessRequest:
    return request_access(group, actor=user, minutes=120, reason="deploy a fix", **fields)


def trail() -> list[tuple[str, dict]]:
    return list(AuditEvent.objects.order_by("sequence").values_list("kind", "data"))


def test_approve_in_slack_by_two_owners_gives_access_and_every_event_says_via_slack(
        fake_slack, staging, owner, second_owner, member):
    staging.approvals_needed = 2
    staging.save()
    access_request = ask(staging, member)
    link(owner, "UOLIVIA")
    link(second_owner, "UBOB")
    before = AuditEvent.objects.count()

    assert post_signed(click("request.approve", access_request.pk, "UOLIVIA")).status_code == 200
    update = fake_slack.made("chat.update")[-1]
    assert (update["channel"], update["ts"]) == (CHANNEL, "1548261231.000200")
    assert "Approved by olivia (1 of 2)" in str(update["blocks"])
    assert "request.approve" in str(update["blocks"])  # the second owner still can

    assert post_signed(click("request.approve", access_request.pk, "UBOB")).status_code == 200
    grant = Grant.objects.get(pk=access_request.grant_id)
    assert grant.status == Grant.Status.ACTIVE
    update = fake_slack.made("chat.update")[-1]
    assert "Approved by olivia and bob (2 of 2): access until" in str(update["blocks"])
    assert "request.approve" not in str(update["blocks"])

    new = AuditEvent.objects.order_by("sequence")[before:]
    assert [event.kind for event in new] == [
        EventKind.REQUEST_APPROVAL, EventKind.REQUEST_APPROVED, EventKind.GRANT_ACTIVATED]
    assert all(event.data["via"] == "slack" for event in new)
    assert [event.actor_label for event in new] == ["olivia", "bob", "bob"]
    assert new[0].user_agent.startswith("Slackbot") and new[0].ip == "192.0.2.77"
    assert ephemeral_texts(fake_slack) == []


def test_the_same_owner_clicking_approve_twice_approves_once(
        fake_slack, staging, owner, second_owner, member):
    staging.approvals_needed = 2
    staging.save()
    access_request = ask(staging, member)
    link(owner, "UOLIVIA")

    post_signed(click("request.approve", access_request.pk, "UOLIVIA"))
    post_signed(click("request.approve", access_request.pk, "UOLIVIA"))

    assert Approval.objects.filter(request=access_request).count() == 1
    assert [kind for kind, _ in trail()].count(EventKind.REQUEST_APPROVAL) == 1
    assert Grant.objects.get(pk=access_request.grant_id).status == Grant.Status.REQUESTED
    assert ephemeral_texts(fake_slack) == ["You have already approved this request."]


def test_approving_ones_own_request_is_refused_in_slack_as_on_the_page(
        fake_slack, staging, owner, second_owner, verified_client):
    access_request = ask(staging, owner)
    link(owner, "UOLIVIA")
    browser = verified_client(owner)
    before = trail()

    response = post_signed(click("request.approve", access_request.pk, "UOLIVIA"))

    assert response.status_code == 200  # Slack shows the clicker the ephemeral answer
    assert ephemeral_texts(fake_slack) == ["You cannot approve your own request."]
    ephemeral = fake_slack.made("chat.postEphemeral")[0]
    assert (ephemeral["channel"], ephemeral["user"]) == (CHANNEL, "UOLIVIA")
    assert fake_slack.made("chat.update") == []  # the message is unchanged
    assert not Approval.objects.exists()
    assert trail() == before  # nothing changed, nothing recorded

    # The page, on the same refusal: the same words, and the same trail.
    page = browser.post(reverse("breakglass:approve-request", args=[access_request.pk]))
    assert page.status_code == 403
    assert "You cannot approve your own request." in page.content.decode()
    assert trail() == before


def test_an_outsider_is_told_no_such_request(fake_slack, staging, member, outsider):
    access_request = ask(staging, member)
    link(outsider, "UOSCAR")
    before = trail()
    post_signed(click("request.approve", access_request.pk, "UOSCAR"))
    assert ephemeral_texts(fake_slack) == ["No such request."]
    assert trail() == before


def test_deny_opens_a_modal_and_its_submission_denies_with_the_reason(
        fake_slack, staging, owner, member):
    access_request = ask(staging, member)
    link(owner, "UOLIVIA")

    post_signed(click("request.deny", access_request.pk, "UOLIVIA"))
    opened = fake_slack.made("views.open")[0]
    assert opened["trigger_id"] == "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3"
    view = opened["view"]
    assert view["callback_id"] == "request.deny"
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.PENDING  # nothing yet

    import json
    metadata = json.loads(view["private_metadata"])
    empty = post_signed(submission(metadata, "  ", "UOLIVIA"))
    assert empty.json() == {"response_action": "errors",
                            "errors": {"reason": "Say why: the requester is told."}}

    done = post_signed(submission(metadata, "use staging-2", "UOLIVIA"))
    assert done.status_code == 200 and done.content == b""
    access_request.refresh_from_db()
    assert (access_request.status, access_request.comment) == ("denied", "use staging-2")
    denied = AuditEvent.objects.get(kind=EventKind.REQUEST_DENIED)
    assert (denied.actor_label, denied.data["via"]) == ("olivia", "slack")
    update = fake_slack.made("chat.update")[-1]
    assert update["ts"] == "1548261231.000200"
    assert "Denied by olivia: use staging-2" in str(update["blocks"])


def test_not_us_by_an_owner_ends_a_break_glass_and_locks_the_holder(
        fake_slack, database, owner, member):
    grant = break_glass(database, actor=member, reason="quick fix")
    link(owner, "UOLIVIA")

    post_signed(click("grant.not_us", grant.pk, "UOLIVIA"))

    grant.refresh_from_db()
    member.refresh_from_db()
    assert not grant.gives_access() and not member.is_active
    aborted = AuditEvent.objects.get(kind=EventKind.GRANT_ABORTED)
    assert (aborted.actor_label, aborted.data["via"]) == ("olivia", "slack")
    assert aborted.data["grant_ended"] is True
    update = fake_slack.made("chat.update")[-1]
    assert "Not us — access ended and mark locked by olivia" in str(update["blocks"])

    post_signed(click("grant.not_us", grant.pk, "UOLIVIA"))  # a second click
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_ABORTED).count() == 1
    assert ephemeral_texts(fake_slack) == [
        "Already done: this access has ended and mark is locked."]


def test_not_us_by_someone_else_is_refused_and_recorded(fake_slack, database, member, outsider):
    grant = break_glass(database, actor=member, reason="quick fix")
    link(outsider, "UOSCAR")

    post_signed(click("grant.not_us", grant.pk, "UOSCAR"))

    grant.refresh_from_db()
    assert grant.gives_access()
    assert ephemeral_texts(fake_slack) == [
        "Only security reviewers and the group's owners abort a use."]
    refused = AuditEvent.objects.get(kind=EventKind.ABORT_REFUSED)
    assert (refused.actor_label, refused.data["via"]) == ("oscar", "slack")
    assert not AuditEvent.objects.filter(kind=EventKind.GRANT_ABORTED).exists()


def test_a_bad_signature_is_refused_and_recorded(fake_slack, staging, owner, member):
    access_request = ask(staging, member)
    link(owner, "UOLIVIA")
    response = post_signed(click("request.approve", access_request.pk, "UOLIVIA"),
                           secret="not-the-signing-secret")
    assert response.status_code == 401
    refused = AuditEvent.objects.get(kind=EventKind.SLACK_INTERACTION_REFUSED)
    assert (refused.reason, refused.ip, refused.outcome) == ("bad signature", "192.0.2.77",
                                                             "denied")
    assert not Approval.objects.exists() and fake_slack.calls == []


def test_a_stale_timestamp_is_refused_even_when_signed(fake_slack, staging, owner, member):
    access_request = ask(staging, member)
    link(owner, "UOLIVIA")
    response = post_signed(click("request.approve", access_request.pk, "UOLIVIA"),
                           timestamp=int(time.time()) - 6 * 60)
    assert response.status_code == 401
    assert AuditEvent.objects.get(kind=EventKind.SLACK_INTERACTION_REFUSED).reason == (
        "stale timestamp")
    assert not Approval.objects.exists()


def test_a_flood_of_forged_calls_leaves_a_bounded_trail(fake_slack):
    for _ in range(25):
        assert post_signed(click("request.approve", 1), secret="forged").status_code == 401
    refused = AuditEvent.objects.filter(kind=EventKind.SLACK_INTERACTION_REFUSED)
    assert refused.count() == 10
    assert "throttled" in refused.order_by("sequence").last().data


def test_the_endpoint_refuses_an_oversized_or_unsigned_body(fake_slack):
    from django.test import Client

    url = reverse("chatops:interactions")
    big = Client().post(url, data="payload=" + "x" * 70_000,
                        content_type="application/x-www-form-urlencoded")
    assert big.status_code == 413
    unsigned = Client().post(url, data="payload={}",
                             content_type="application/x-www-form-urlencoded")
    assert unsigned.status_code == 401
    assert Client().get(url).status_code == 405


def test_without_slack_configured_the_endpoint_is_not_there(db, staging, member):
    access_request = ask(staging, member)
    response = post_signed(click("request.approve", access_request.pk))
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(kind=EventKind.SLACK_INTERACTION_REFUSED).exists()


def test_another_workspace_is_refused_when_the_team_is_pinned(fake_slack, settings, staging,
                                                               owner, member):
    settings.SLACK_TEAM_ID = "TOTHER"
    access_request = ask(staging, member)
    link(owner, "UOLIVIA")
    assert post_signed(click("request.approve", access_request.pk, "UOLIVIA")).status_code == 403
    assert not Approval.objects.exists()
    assert AuditEvent.objects.get(kind=EventKind.SLACK_INTERACTION_REFUSED).data["team"] == (
        "T9TK3CUKW")


def test_an_unknown_button_does_nothing(fake_slack, staging, member):
    payload = click("WaXA", "click_me_123")  # Slack's example as it is
    before = trail()
    assert post_signed(payload).status_code == 200
    assert trail() == before and fake_slack.calls == []


@pytest.mark.parametrize("payload", [
    {"type": "block_actions", "actions": "x"},
    {"type": "block_actions", "actions": [{"action_id": {"a": 1}, "value": "1"}]},
    {"type": "block_actions", "user": "x", "actions": [{"action_id": "request.approve",
                                                         "value": "1"}]},
    {"type": "block_actions", "actions": [{"action_id": "request.approve", "value": "1e9"}]},
    {"type": "block_actions", "actions": [{"action_id": "grant.not_us", "value": "²"}]},
    {"type": "view_submission", "view": {"callback_id": "request.deny", "state": "x"}},
    {"type": "view_submission", "user": [], "view": {
        "callback_id": "request.deny", "private_metadata": "[1]",
        "state": {"values": {"reason": {"reason": {"value": "why"}}}}}},
    ["not", "an", "object"],
])
def test_odd_payloads_are_answered_without_an_error(fake_slack, payload):
    response = post_signed(payload)
    assert response.status_code in {200, 400}
    assert not AuditEvent.objects.exclude(kind=EventKind.SLACK_INTERACTION_REFUSED).exists()

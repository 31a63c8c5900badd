"""Alerts posted to Slack through the outbox: a new request with Approve / Deny, a break glass
with "Not us"; rate limits retried, a refusal dead-lettered."""

import json

import pytest
from django.core.checks import run_checks

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from breakglass.services.break_glass import break_glass
from breakglass.services.requests import request_access
from tests.chatops.conftest import CHANNEL

pytestmark = pytest.mark.django_db


def elements(blocks: list) -> list[dict]:
    return [element for block in blocks if block["type"] == "actions"
            for element in block["elements"]]


def test_a_new_request_is_posted_to_slack_with_approve_and_deny(fake_slack, staging, member):
    access_request = request_access(staging, actor=member, minutes=90, reason="deploy <a> fix")
    delivery = Delivery.objects.get(channel=Delivery.Channel.SLACK)
    assert (delivery.recipient, delivery.event.kind) == (CHANNEL, EventKind.REQUEST_CREATED)

    send_due_deliveries()

    posted = fake_slack.made("chat.postMessage")
    assert len(posted) == 1 and posted[0]["channel"] == CHANNEL
    assert posted[0]["text"] == "mark asks for access to Staging for 1 hour 30 minutes"
    buttons = elements(posted[0]["blocks"])
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("request.approve", str(access_request.pk)), ("request.deny", str(access_request.pk))]
    assert "deploy &lt;a&gt; fix" in json.dumps(posted[0]["blocks"])  # user text stays text
    _, _, headers = fake_slack.calls[0]
    assert headers["Authorization"] == "Bearer xoxb-test-token"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert delivery.provider_message_id == f"{CHANNEL}:1700000000.000001"


def test_a_break_glass_is_posted_with_not_us_and_no_ones_personal_link(
        fake_slack, database, member):
    grant = break_glass(database, actor=member, reason="DB is down")

    send_due_deliveries()  # expands the activation's fan-out, then sends what it queued

    posted = fake_slack.made("chat.postMessage")
    assert len(posted) == 1
    assert posted[0]["text"].startswith("Break glass: mark opened Production DB until ")
    buttons = elements(posted[0]["blocks"])
    assert [(b["action_id"], b["value"]) for b in buttons] == [("grant.not_us", str(grant.pk))]
    assert buttons[0]["confirm"]["confirm"]["text"] == "Revoke and lock"
    assert "/review/abort/" not in json.dumps(posted[0])  # abort links are per person


def test_other_alerts_and_an_unconfigured_slack_post_nothing(settings, fake_slack, staging,
                                                             member):
    settings.SLACK_CHANNEL = ""
    request_access(staging, actor=member, minutes=90, reason="deploy")
    assert not Delivery.objects.filter(channel=Delivery.Channel.SLACK).exists()


def test_a_rate_limit_is_retried_and_a_refusal_is_dead_lettered(fake_slack, staging, member):
    request_access(staging, actor=member, minutes=90, reason="deploy")
    fake_slack.failures.append((429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"}))
    send_due_deliveries()
    delivery = Delivery.objects.get(channel=Delivery.Channel.SLACK)
    assert (delivery.status, delivery.last_error) == (
        Delivery.Status.PENDING, "slack rate limit (Retry-After 7 s)")

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
    fake_slack.failures.append((200, {"ok": False, "error": "channel_not_found"}, {}))
    send_due_deliveries()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == (
        Delivery.Status.FAILED, "slack answered 200 channel_not_found")
    assert AuditEvent.objects.filter(kind=EventKind.DELIVERY_FAILED).count() == 1


def test_an_unreachable_slack_is_retried(settings, fake_slack, staging, member):
    from tests.ports import free_port

    settings.SLACK_API_URL = f"http://127.0.0.1:{free_port()}/api/"
    request_access(staging, actor=member, minutes=90, reason="deploy")
    send_due_deliveries()
    delivery = Delivery.objects.get(channel=Delivery.Channel.SLACK)
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.last_error.startswith("slack unreachable")


def test_the_token_and_the_signing_secret_come_together(settings):
    settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET = "xoxb-1", ""
    assert "chatops.E001" in [message.id for message in run_checks()]
    settings.SLACK_SIGNING_SECRET = "secret"
    assert "chatops.E001" not in [message.id for message in run_checks()]
    settings.SLACK_BOT_TOKEN = settings.SLACK_SIGNING_SECRET = ""
    settings.SLACK_CHANNEL = "C1"
    assert "chatops.E002" in [message.id for message in run_checks()]


def test_a_decision_made_on_the_page_redraws_the_requests_message(fake_slack, staging, owner,
                                                                  member):
    from breakglass.services.grants import revoke_grant
    from breakglass.services.requests import approve_request, deny_request

    early = request_access(staging, actor=member, minutes=90, reason="deploy")
    approve_request(early, actor=owner)  # decided before its message was even posted
    send_due_deliveries()
    assert len(fake_slack.made("chat.postMessage")) == 1
    [redrawn] = fake_slack.made("chat.update")
    assert (redrawn["channel"], redrawn["ts"]) == (CHANNEL, "1700000000.000001")
    assert "Approved by olivia (1 of 1)" in json.dumps(redrawn["blocks"])
    assert elements(redrawn["blocks"]) == []

    revoke_grant(early.grant, actor=owner, reason="done")  # a new request needs it ended
    later = request_access(staging, actor=member, minutes=30, reason="again")
    send_due_deliveries()
    deny_request(later, actor=owner, comment="not today")
    send_due_deliveries()
    assert "Denied by olivia: not today" in json.dumps(fake_slack.made("chat.update")[-1])
    assert fake_slack.made("chat.update")[-1]["ts"] == "1700000000.000002"


def test_a_redraw_waits_for_its_message_to_be_posted(fake_slack, staging, owner, member):
    from breakglass.services.requests import deny_request

    access_request = request_access(staging, actor=member, minutes=90, reason="deploy")
    deny_request(access_request, actor=owner, comment="no")
    fake_slack.failures.append((503, {"ok": False, "error": "service_unavailable"}, {}))
    send_due_deliveries()  # the post fails (retryable): the redraw must wait for it
    redraw = Delivery.objects.get(recipient=f"redraw-request:{access_request.pk}")
    assert redraw.status == Delivery.Status.PENDING
    assert redraw.last_error == "the request's Slack message is not posted yet"
    assert fake_slack.made("chat.update") == []

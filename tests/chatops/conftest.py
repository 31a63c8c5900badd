"""Slack for the chatops tests: a fake Web API on 127.0.0.1 under the real slack_sdk client, and
Slack's documented example payloads, signed with the SDK's own signer and posted to the
interaction endpoint."""

import copy
import json
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from slack_sdk.signature import SignatureVerifier

from breakglass.models import Group
from chatops.models import SlackLink
from tests.chatops.slack_server import FakeSlack
from tests.conftest import make_user

PAYLOADS = Path(__file__).parent / "payloads"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T9TK3CUKW"
CHANNEL = "CBR2V3XEX"


@pytest.fixture
def fake_slack(settings):
    with FakeSlack() as server:
        settings.SLACK_BOT_TOKEN = "xoxb-test-token"
        settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
        settings.SLACK_CHANNEL = CHANNEL
        settings.SLACK_API_URL = server.url
        yield server


@pytest.fixture
def staging(owner):
    group = Group.objects.create(name="Staging", slug="staging", requestable=True)
    group.owners.add(owner)
    return group


@pytest.fixture
def second_owner(staging):
    bob = make_user("bob")
    staging.owners.add(bob)
    return bob


def link(user, slack_user_id: str) -> SlackLink:
    """A link as the account page leaves it (tests/chatops/test_linking.py walks the flow)."""
    from django.utils import timezone

    return SlackLink.objects.create(user=user, team_id=TEAM, slack_user_id=slack_user_id,
                                    slack_name=user.username, linked_at=timezone.now())


def example(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def click(action_id: str, value, slack_user_id: str = "UA8RXUSPL",
          message_ts: str = "1548261231.000200") -> dict:
    """Slack's block_actions example, clicked on our button for our object."""
    payload = example("block_actions")
    if slack_user_id != payload["user"]["id"]:
        payload["user"].update(id=slack_user_id, username=f"slack-{slack_user_id.lower()}")
    payload["actions"][0].update(action_id=action_id, value=str(value))
    payload["container"]["message_ts"] = message_ts
    return payload


def submission(metadata: dict, reason: str, slack_user_id: str = "UA8RXUSPL") -> dict:
    """Slack's view_submission example, as our Deny modal submits it."""
    payload = copy.deepcopy(example("view_submission"))
    payload["user"].update(id=slack_user_id)
    payload["view"].update(callback_id="request.deny", private_metadata=json.dumps(metadata),
                           state={"values": {"reason": {"reason": {
                               "type": "plain_text_input", "value": reason}}}})
    return payload


def post_signed(payload: dict, *, timestamp: int | None = None, secret: str = SIGNING_SECRET,
                client: Client | None = None):
    """POST `payload` as Slack does: form-encoded, signed v0 with the signing secret."""
    body = urlencode({"payload": json.dumps(payload)})
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return (client or Client()).post(
        reverse("chatops:interactions"), data=body,
        content_type="application/x-www-form-urlencoded", REMOTE_ADDR="192.0.2.77",
        HTTP_X_SLACK_REQUEST_TIMESTAMP=stamp, HTTP_X_SLACK_SIGNATURE=signature,
        HTTP_USER_AGENT="Slackbot 1.0 (+https://api.slack.com/robots)")


def ephemeral_texts(fake_slack: FakeSlack) -> list[str]:
    return [arguments["text"] for arguments in fake_slack.made("chat.postEphemeral")]

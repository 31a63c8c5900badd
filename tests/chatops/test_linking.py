"""Who a Slack user is: a link they made from both sides, or else the one active user with the
email address Slack says they confirmed; nobody else."""

import re
import time

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Approval, Grant
from breakglass.services.requests import request_access
from chatops.models import SlackLink
from chatops.services import LINK_SALT
from tests.chatops.conftest import click, ephemeral_texts, link, post_signed
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def slack_profile(email: str, confirmed: bool = True) -> dict:
    return {"id": "UA8RXUSPL", "team_id": "T9TK3CUKW", "name": "jtorrance", "deleted": False,
            "is_email_confirmed": confirmed, "profile": {"email": email}}


@pytest.fixture
def waiting(staging, member):
    return request_access(staging, actor=member, minutes=60, reason="deploy")


def test_an_unlinked_user_whose_confirmed_email_matches_acts_as_that_user(
        fake_slack, waiting, owner):
    fake_slack.users["UA8RXUSPL"] = slack_profile("OLIVIA@Example.com")
    post_signed(click("request.approve", waiting.pk))
    assert Grant.objects.get(pk=waiting.grant_id).status == Grant.Status.ACTIVE
    approved = AuditEvent.objects.get(kind=EventKind.REQUEST_APPROVED)
    assert (approved.actor_label, approved.data["via"]) == ("olivia", "slack")
    assert fake_slack.made("users.info")[0]["user"] == "UA8RXUSPL"


@pytest.mark.parametrize("profile", [
    slack_profile("olivia@example.com", confirmed=False),  # Slack has not confirmed it
    slack_profile("nobody@example.com"),
    slack_profile(""),
])
def test_an_unlinked_user_without_a_confirmed_matching_email_is_offered_a_link(
        fake_slack, waiting, owner, profile):
    fake_slack.users["UA8RXUSPL"] = profile
    post_signed(click("request.approve", waiting.pk))
    assert not Approval.objects.exists()
    [offer] = ephemeral_texts(fake_slack)
    assert "Link your Slack account" in offer and "/integrations/slack/link/" in offer
    refused = AuditEvent.objects.get(kind=EventKind.SLACK_INTERACTION_REFUSED)
    assert refused.reason == "a Slack user linked to no one"
    assert refused.actor_label == "slack jtorrance (T9TK3CUKW)"


def test_an_email_shared_by_two_users_names_nobody(fake_slack, waiting, owner, staging):
    twin = make_user("olivia2")
    twin.email = "Olivia@example.com"
    twin.save()
    staging.owners.add(twin)
    fake_slack.users["UA8RXUSPL"] = slack_profile("olivia@example.com")
    post_signed(click("request.approve", waiting.pk))
    assert not Approval.objects.exists()


def test_a_link_of_a_deactivated_user_does_not_act(fake_slack, waiting, owner):
    link(owner, "UA8RXUSPL")
    owner.is_active = False
    owner.save()
    post_signed(click("request.approve", waiting.pk))
    assert not Approval.objects.exists()


def test_the_link_offered_in_slack_links_the_account_in_a_verified_session(
        fake_slack, waiting, owner, verified_client):
    post_signed(click("request.approve", waiting.pk))  # no link, no email: offered a link
    url = re.search(r"https?://\S+/integrations/slack/link/\S+/", ephemeral_texts(fake_slack)[0])
    path = url.group(0).split("://", 1)[1].split("/", 1)[1]
    path = "/" + path

    assert Client().get(path).status_code == 302  # signed out: to the sign-in page
    browser = verified_client(owner)
    page = browser.get(path)
    assert page.status_code == 200 and "jtorrance" in page.content.decode()
    assert not SlackLink.objects.exists()  # a GET changes nothing
    assert browser.post(path).status_code == 302

    made = SlackLink.objects.get()
    assert (made.user, made.team_id, made.slack_user_id) == (owner, "T9TK3CUKW", "UA8RXUSPL")
    linked = AuditEvent.objects.get(kind=EventKind.SLACK_ACCOUNT_LINKED)
    assert (linked.actor_label, linked.data["action"], linked.data["slack_user"]) == (
        "olivia", "linked", "UA8RXUSPL")

    post_signed(click("request.approve", waiting.pk))  # the same click now acts
    assert Grant.objects.get(pk=waiting.grant_id).status == Grant.Status.ACTIVE

    account = browser.get(reverse("accounts:security")).content.decode()
    assert "Linked as jtorrance" in account
    assert browser.post(reverse("chatops:unlink")).status_code == 302
    assert not SlackLink.objects.exists()
    unlinked = AuditEvent.objects.filter(kind=EventKind.SLACK_ACCOUNT_LINKED).order_by(
        "sequence").last()
    assert unlinked.data["action"] == "unlinked"
    assert "Not linked" in browser.get(reverse("accounts:security")).content.decode()


def test_a_stale_forged_or_taken_link_is_refused(fake_slack, owner, outsider, verified_client,
                                                 monkeypatch):
    browser = verified_client(owner)
    forged = reverse("chatops:link", args=["not-a-token"])
    assert browser.post(forged).status_code == 400

    token = signing.dumps({"t": "T9TK3CUKW", "u": "UA8RXUSPL", "n": "jtorrance"},
                          salt=LINK_SALT, compress=True)
    later = time.time() + 11 * 60
    monkeypatch.setattr(time, "time", lambda: later)
    expired = browser.post(reverse("chatops:link", args=[token]))
    monkeypatch.undo()
    assert expired.status_code == 400 and "expired" in expired.content.decode()

    link(outsider, "UA8RXUSPL")
    taken = browser.post(reverse("chatops:link", args=[token]))
    assert taken.status_code == 400 and "another Breakglass user" in taken.content.decode()
    assert SlackLink.objects.get().user == outsider
    assert not AuditEvent.objects.filter(kind=EventKind.SLACK_ACCOUNT_LINKED).exists()

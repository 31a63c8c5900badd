"""Provisioning connectors through the outbox: a Django auth group, and a webhook signed per
Standard Webhooks that a real receiver on 127.0.0.1 verifies with the standardwebhooks package
(a retry keeps its webhook-id; a replayed, tampered or late delivery is refused)."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.utils import timezone

from audit.models import Delivery
from audit.outbox import expand_fanout, send_due_deliveries
from audit.webhooks import is_secret
from breakglass.connectors.webhook import signing_secrets
from breakglass.models import Connector, Group
from breakglass.services.break_glass import break_glass
from breakglass.services.connectors import create_connector
from breakglass.services.errors import InvalidInput
from breakglass.services.grants import revoke_grant
from tests.audit.fakes import WebhookReceiver
from tests.audit.webhook_receiver import VerifyingReceiver, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def database(member):
    group = Group.objects.create(name="Production DB", slug="prod-db")
    group.break_glass_users.add(member)
    return group


def webhook_connector(group: Group, receiver: VerifyingReceiver) -> Connector:
    """A webhook connector to `receiver`, which is given the connector's secret."""
    connector = Connector.objects.create(name="hook", group=group, kind=Connector.Kind.WEBHOOK,
                                         url=receiver.url)
    receiver.secrets = [connector.signing_secret()]
    return connector


@pytest.fixture
def dba_role(database):
    role = AuthGroup.objects.create(name="dba")
    Connector.objects.create(name="deployers", group=database, kind=Connector.Kind.DJANGO_GROUP,
                             django_group=role)
    return role


def test_a_grant_carries_real_django_permissions_while_it_lasts(database, dba_role, member):
    grant = break_glass(database, actor=member, reason="r")
    send_due_deliveries()
    assert member.groups.filter(pk=dba_role.pk).exists()
    revoke_grant(grant, actor=member)
    send_due_deliveries()
    assert not member.groups.filter(pk=dba_role.pk).exists()
    provisioning = Delivery.objects.filter(channel="connector")
    assert provisioning.count() == 2
    assert set(provisioning.values_list("status", flat=True)) == {"sent"}


def test_a_late_retry_cannot_undo_a_revocation(database, dba_role, member):
    grant = break_glass(database, actor=member, reason="r")
    revoke_grant(grant, actor=member)
    for fanout in Delivery.objects.filter(channel="fanout").order_by("pk"):
        expand_fanout(fanout)  # writes the connector deliveries, sends nothing
    Delivery.objects.filter(channel="fanout").update(status="sent")
    provisioning = Delivery.objects.filter(channel="connector")
    Delivery.objects.update(next_attempt_at=timezone.now() + timedelta(hours=1))
    revoke, stale_grant = provisioning.order_by("-pk")
    # The "revoke" is delivered first, then the stale "grant" retry arrives.
    for delivery in (revoke, stale_grant):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert send_due_deliveries() == 1
    assert json.loads(stale_grant.body)["action"] == "grant"
    assert provisioning.filter(status="sent").count() == 2
    assert not member.groups.filter(pk=dba_role.pk).exists()


def test_nested_access_provisions_the_contained_groups_connectors(database, dba_role, owner):
    top = Group.objects.create(name="Break-glass DB", slug="bg-db")
    top.contains.add(database)
    top.break_glass_users.add(owner)
    break_glass(top, actor=owner, reason="on call")
    send_due_deliveries()
    assert owner.groups.filter(pk=dba_role.pk).exists()


def test_the_webhook_connector_is_signed_per_standard_webhooks_and_retried_until_2xx(
        database, member, monkeypatch):
    with VerifyingReceiver(status=503) as receiver:
        connector = webhook_connector(database, receiver)
        break_glass(database, actor=member, reason="r")
        send_due_deliveries()
        delivery = Delivery.objects.get(channel="connector")
        assert delivery.status == "pending" and delivery.last_error == "webhook answered 503"
        receiver.status = 204
        later = timezone.now() + timedelta(seconds=90)
        monkeypatch.setattr(timezone, "now", lambda: later)
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=later)
        send_due_deliveries()
    first, retry = receiver.received
    secret = connector.signing_secret()
    assert first.verified_with == [secret] and retry.verified_with == [secret]
    assert retry.webhook_id == first.webhook_id and retry.webhook_id.startswith("msg_")
    assert int(retry.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"]) + 90
    assert len(retry.headers["webhook-signature"].split(" ")) == 1  # never rotated: one secret
    assert "x-breakglass-signature" not in retry.headers
    payload = json.loads(retry.body)
    assert (payload["action"], payload["user"], payload["group"]) == (
        "grant", member.username, "prod-db")
    assert Delivery.objects.get(channel="connector").status == "sent"


def test_each_grant_event_has_its_own_webhook_id(database, member):
    with VerifyingReceiver() as receiver:
        webhook_connector(database, receiver)
        grant = break_glass(database, actor=member, reason="r")
        revoke_grant(grant, actor=member)
        send_due_deliveries()
    actions = [json.loads(received.body)["action"] for received in receiver.received]
    ids = {received.webhook_id for received in receiver.received}
    assert actions == ["grant", "revoke"] and len(ids) == 2


def test_a_replayed_grant_event_is_dropped_by_its_id_and_a_tampered_one_refused(
        database, member):
    with VerifyingReceiver() as receiver:
        webhook_connector(database, receiver)
        break_glass(database, actor=member, reason="r")
        send_due_deliveries()
        captured = receiver.received[0]
        assert post(receiver.url, captured.headers, captured.body) == 204
        promoted = captured.body.replace(b'"action": "grant"', b'"action": "revoke"')
        assert promoted != captured.body
        assert post(receiver.url, captured.headers, promoted) == 400
    replayed, tampered = receiver.received[1:]
    assert replayed.verified_with and replayed.repeat
    assert tampered.errors == ["No matching signature found"]


def test_a_grant_event_resent_more_than_five_minutes_later_is_refused(database, member,
                                                                     monkeypatch):
    six_minutes_ago = timezone.now() - timedelta(minutes=6)
    with WebhookReceiver() as tap, VerifyingReceiver() as receiver:
        connector = Connector.objects.create(name="hook", group=database,
                                             kind=Connector.Kind.WEBHOOK, url=tap.url)
        receiver.secrets = [connector.signing_secret()]
        with monkeypatch.context() as past:
            past.setattr(timezone, "now", lambda: six_minutes_ago)
            break_glass(database, actor=member, reason="r")
            send_due_deliveries()
        headers, body = tap.requests[0]
        headers = {name.lower(): value for name, value in headers.items()}
        assert post(receiver.url, headers, body) == 400
    assert receiver.received[0].errors == ["Message timestamp too old"]


def test_raising_the_secret_version_signs_with_both_through_the_overlap_then_the_new_one(
        database, member, settings):
    settings.WEBHOOK_ROTATION_OVERLAP = timedelta(hours=24)
    with VerifyingReceiver() as receiver:
        connector = webhook_connector(database, receiver)
        old = connector.signing_secret()
        connector.secret_version += 1
        connector.save()
        new = connector.signing_secret()
        receiver.secrets = [old, new]
        grant = break_glass(database, actor=member, reason="r")
        send_due_deliveries()
        during = receiver.received[-1]
        # 25 hours on, the overlap has ended.
        Connector.history.filter(id=connector.pk).update(
            history_date=timezone.now() - timedelta(hours=25))
        revoke_grant(grant, actor=member)
        send_due_deliveries()
        after = receiver.received[-1]
    assert new != old
    assert during.verified_with == [old, new]  # a receiver holding either one verifies
    assert after.verified_with == [new]
    assert after.errors == ["No matching signature found"]  # the one holding only the old
    assert len(after.headers["webhook-signature"].split(" ")) == 1


def test_a_connector_with_no_dated_change_of_version_signs_with_its_current_secret_only(
        database):
    connector = Connector.objects.create(name="hook", group=database, kind="webhook",
                                         url="https://hooks.example.org/b")
    connector.secret_version = 2
    connector.save()
    assert len(signing_secrets(connector, timezone.now())) == 2
    Connector.history.filter(id=connector.pk, secret_version=2).delete()
    assert signing_secrets(connector, timezone.now()) == [connector.signing_secret()]


def test_signing_secrets_are_whsec_differ_per_connector_and_change_with_the_version(database):
    first = Connector.objects.create(name="a", group=database, kind="webhook",
                                     url="https://a.example/h")
    second = Connector.objects.create(name="b", group=database, kind="webhook",
                                      url="https://b.example/h")
    assert is_secret(first.signing_secret()) and is_secret(second.signing_secret())
    assert first.signing_secret() != second.signing_secret()
    before = first.signing_secret()
    first.secret_version += 1
    assert first.signing_secret() != before
    assert first.signing_secret(version=1) == before


def test_a_webhook_connector_to_plain_http_elsewhere_than_this_machine_is_refused(
        database, member):
    with pytest.raises(InvalidInput, match="https://"):
        create_connector("webhook", "hook", database, {"url": "http://hooks.example.org/b"},
                         actor=None)
    # One stored before the rule: its deliveries fail at once, saying why.
    Connector.objects.create(name="old", group=database, kind="webhook",
                             url="http://hooks.example.org/b")
    break_glass(database, actor=member, reason="r")
    send_due_deliveries()
    delivery = Delivery.objects.get(channel="connector")
    assert delivery.status == "failed"
    assert delivery.last_error.startswith("the webhook address is refused: ")

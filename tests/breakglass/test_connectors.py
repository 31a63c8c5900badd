"""Provisioning connectors through the outbox: a Django auth group and a signed webhook."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.utils import timezone

from audit.models import Delivery
from audit.outbox import expand_fanout, send_due_deliveries
from breakglass.models import Connector, Group
from breakglass.services.break_glass import break_glass
from breakglass.services.grants import revoke_grant
from tests.audit.fakes import WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def database(member):
    group = Group.objects.create(name="Production DB", slug="prod-db")
    group.break_glass_users.add(member)
    return group


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


def test_the_webhook_connector_is_signed_and_retried_until_2xx(database, member):
    with WebhookReceiver(status=503) as receiver:
        connector = Connector.objects.create(name="hook", group=database,
                                             kind=Connector.Kind.WEBHOOK, url=receiver.url)
        break_glass(database, actor=member, reason="r")
        send_due_deliveries()
        delivery = Delivery.objects.get(channel="connector")
        assert delivery.status == "pending" and delivery.last_error == "webhook answered 503"
        receiver.status = 200
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        send_due_deliveries()
    assert len(receiver.requests) == 2
    headers, body = receiver.requests[-1]
    expected = hmac.new(connector.signing_secret().encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Breakglass-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert (payload["action"], payload["user"], payload["group"]) == (
        "grant", member.username, "prod-db")
    assert Delivery.objects.get(channel="connector").status == "sent"


def test_signing_secrets_differ_per_connector_and_rotate(database):
    first = Connector.objects.create(name="a", group=database, kind="webhook",
                                     url="https://a.example/h")
    second = Connector.objects.create(name="b", group=database, kind="webhook",
                                      url="https://b.example/h")
    assert first.signing_secret() != second.signing_secret()
    before = first.signing_secret()
    first.secret_version += 1
    assert first.signing_secret() != before

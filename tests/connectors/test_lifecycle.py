"""A grant's whole life on each real target (PostgreSQL role, MariaDB role, LDAP group): break
glass → present; revoked or expired (by a real worker) → absent; a member added by hand →
detected, audited, alerted and removed within one reconcile; the target down during a
revocation → "revocation pending" shown until it returns and the revocation lands."""

import itertools
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from breakglass.models import Connector, ConnectorLogin, ConnectorMembership, Scope
from breakglass.services import connectors
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass
from breakglass.services.errors import BreakGlassRefused
from breakglass.services.grants import revoke_grant
from tests.connectors.conftest import SERVER_FIXTURES

pytestmark = pytest.mark.django_db
_names = itertools.count(1)


@pytest.fixture(params=sorted(SERVER_FIXTURES))
def server(request):
    return request.getfixturevalue(SERVER_FIXTURES[request.param])


def target_name(server, short: str) -> str:
    make = getattr(server, "target_for", None)
    return make(short) if make else short


@pytest.fixture
def connector(server, database, member, reviewer) -> Connector:
    """A connector of prod-db on the server, to a target of its own; mark has a login."""
    target = target_name(server, f"prod_admin_{next(_names)}")
    server.prepare_target(target)
    server.create_login(member.username)
    return connectors.create_connector(server.kind, f"target-{next(_names)}", database,
                                       server.settings(target), actor=None)


def relay() -> None:
    """What the worker's relay does after each commit: expand fan-outs, then deliver."""
    while send_due_deliveries():
        pass


def test_break_glass_lands_in_the_target_and_revocation_removes_it(server, connector, database,
                                                                   member):
    grant = break_glass(database, actor=member, reason="disk full")
    relay()
    assert member.username in server.members_by_hand(connector.target_name)
    membership = ConnectorMembership.objects.get(connector=connector, user=member)
    assert (membership.wanted, membership.applied, membership.grant_id) == (True, True, grant.pk)
    revoke_grant(grant, actor=member, reason="done")
    relay()
    assert member.username not in server.members_by_hand(connector.target_name)
    assert connectors.pending_revocations(user=member).count() == 0
    sent = Delivery.objects.filter(channel="connector", status="sent")
    assert [json.loads(d.body)["action"] for d in sent.order_by("pk")] == ["grant", "revoke"]


def test_a_member_added_by_hand_is_found_audited_and_removed_in_one_reconcile(
        server, connector, database, member, owner, reviewer):
    server.create_login("intruder")
    server.add_by_hand(connector.target_name, "intruder")
    result = connectors.reconcile(connector)
    assert result.extra == ["intruder"] and result.revoked == ["intruder"]
    assert "intruder" not in server.members_by_hand(connector.target_name)
    drift = AuditEvent.objects.get(kind=EventKind.CONNECTOR_DRIFT)
    assert drift.data["extra"] == ["intruder"] and "present without access" in drift.reason
    repaired = AuditEvent.objects.get(kind=EventKind.CONNECTOR_REPAIRED)
    assert repaired.data["revoked"] == ["intruder"]
    told = set(Delivery.objects.filter(event=drift, channel="email")
               .values_list("recipient", flat=True))
    assert told == {owner.email, reviewer.email}
    # A second pass finds nothing more: no new drift, nothing repaired.
    connectors.reconcile(connector)
    assert AuditEvent.objects.filter(kind=EventKind.CONNECTOR_DRIFT).count() == 1


def test_a_member_removed_by_hand_while_access_lasts_is_granted_again(server, connector,
                                                                     database, member):
    grant = break_glass(database, actor=member, reason="r")
    relay()
    with connectors.target_for(connector) as target:
        target.revoke(member.username)  # someone removed it on the server
    result = connectors.reconcile(connector)
    assert result.missing == [member.username] and result.granted == [member.username]
    assert member.username in server.members_by_hand(connector.target_name)
    grant.refresh_from_db()
    assert grant.status == "active"  # repairing the target never touches the grant


def test_report_mode_alerts_and_changes_nothing(server, connector, database, member):
    Connector.objects.filter(pk=connector.pk).update(mode=Connector.Mode.REPORT)
    connector.refresh_from_db()
    server.create_login("intruder")
    server.add_by_hand(connector.target_name, "intruder")
    result = connectors.reconcile(connector)
    assert result.extra == ["intruder"] and result.revoked == []
    assert "intruder" in server.members_by_hand(connector.target_name)
    assert AuditEvent.objects.filter(kind=EventKind.CONNECTOR_DRIFT).count() == 1
    assert not AuditEvent.objects.filter(kind=EventKind.CONNECTOR_REPAIRED).exists()
    with connectors.target_for(connector) as target:
        target.revoke("intruder")


def test_a_revocation_refused_by_a_target_that_is_down_stays_pending_until_it_returns(
        server, connector, database, member, verified_client):
    grant = break_glass(database, actor=member, reason="r")
    relay()
    server.stop()
    try:
        revoke_grant(grant, actor=member, reason="done")
        relay()
        delivery = Delivery.objects.get(channel="connector", body__contains='"revoke"')
        assert delivery.status == "pending" and delivery.last_error
        pending_words = f"Revocation pending on {connector.name}"
        client = verified_client(member)
        assert pending_words in client.get(f"/access/grants/{grant.pk}/").content.decode()
        assert pending_words in client.get("/access/").content.decode()
        token = create_application("inventory", [Scope.ACCESS_READ], actor=None)[1]
        answer = client.get("/api/v1/access", {"user": member.username, "group": "prod-db"},
                            HTTP_AUTHORIZATION=f"Bearer {token}").json()
        assert (answer["allowed"], answer["revocation_pending_on"]) == (False, [connector.name])
        # Five minutes on, owners and reviewers hear of it once; it stays pending.
        ConnectorMembership.objects.update(asked_at=timezone.now() - timedelta(minutes=6))
        assert connectors.alert_overdue_revocations() == 1
        assert connectors.alert_overdue_revocations() == 0
        assert AuditEvent.objects.filter(
            kind=EventKind.CONNECTOR_REVOCATION_OVERDUE).count() == 1
        failing = connectors.reconcile(connector)
        assert failing.problem and connectors.pending_revocations(user=member).count() == 1
        connector.refresh_from_db()
        assert connector.health == Connector.Health.FAILING
    finally:
        server.start()
    connectors.reconcile(connector)
    assert member.username not in server.members_by_hand(connector.target_name)
    assert connectors.pending_revocations(user=member).count() == 0
    assert "Revocation pending" not in client.get(f"/access/grants/{grant.pk}/").content.decode()
    connector.refresh_from_db()
    assert connector.health == Connector.Health.OK


def test_without_a_login_access_is_refused_before_it_begins(server, connector, database,
                                                            member):
    Connector.objects.filter(pk=connector.pk).update(logins=Connector.Logins.EXPLICIT)
    with pytest.raises(BreakGlassRefused, match=f"mark has no login set on {connector.name}"):
        break_glass(database, actor=member, reason="r")
    refused = AuditEvent.objects.get(kind=EventKind.GRANT_REFUSED)
    assert connector.name in refused.reason
    ConnectorLogin.objects.create(connector=connector, user=member, login=member.username)
    assert break_glass(database, actor=member, reason="r").status == "active"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_removes_the_access_from_the_target_at_expiry(server, connector, database,
                                                                   member, tmp_path):
    from django_q.models import Schedule

    from breakglass.models import Grant
    from tests.audit.test_qcluster import wait_for
    from tests.breakglass.test_concurrency import start_worker, stop_worker

    break_glass(database, actor=member, reason="r")
    relay()
    assert member.username in server.members_by_hand(connector.target_name)
    soon = timezone.now() + timedelta(seconds=2)
    Grant.objects.update(expires_at=soon)
    Schedule.objects.filter(name__startswith="expire-grant-").update(next_run=soon)
    worker = start_worker(tmp_path)
    try:
        gone = wait_for(
            lambda: member.username not in server.members_by_hand(connector.target_name), 60)
        # The target may answer before the expiry is recorded: access ended at the instant,
        # and reconciliation removes it as the expiry's own revocation, not as drift.
        recorded = wait_for(lambda: Grant.objects.get().status == "expired", 30)
        settled = wait_for(lambda: not connectors.pending_revocations(user=member).exists(), 30)
    finally:
        output = stop_worker(worker)
    assert gone and recorded and settled, output[-3000:]
    assert not AuditEvent.objects.filter(kind=EventKind.CONNECTOR_DRIFT).exists(), list(
        AuditEvent.objects.filter(kind=EventKind.CONNECTOR_DRIFT).values_list("reason", "data"))


def test_reconciling_asks_the_same_number_of_queries_for_3_or_30_holders(server, connector,
                                                                          database):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.conftest import make_user

    def holders(count: int) -> int:
        for n in range(count):
            user = make_user(f"holder_{connector.pk}_{count}_{n}")
            database.members.add(user)
            server.create_login(user.username)
        connectors.reconcile(connector)  # grants them all: drift, then settled
        with CaptureQueriesContext(connection) as queries:
            result = connectors.reconcile(connector)
        assert not result.drifted and result.wanted >= count
        return len(queries.captured_queries)

    assert holders(3) == holders(27)

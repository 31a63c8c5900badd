"""The operator commands SPEC §4 names: `create_application NAME --scope S [--policy SLUG]`
and `expire_grants`, thin adapters over the services, audited through them."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass import tokens
from breakglass.models import Application, Grant, Group, Scope
from breakglass.services.break_glass import break_glass
from recovery import crypto
from recovery.models import RecoveryPolicy
from tests.recovery.helpers import root_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy(trio) -> RecoveryPolicy:
    return root_policy(trio, secret="hunter2-root")


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def printed_token(output: str) -> str:
    return output.rsplit("store it now): ", 1)[1].strip()


def test_create_application_with_a_policy_binds_it_and_its_token_fetches_the_bundle(
        client, policy, reviewer):
    output = run("create_application", "vault-sync", "--policy", "root-credentials")
    token = printed_token(output)
    policy.refresh_from_db()
    application = Application.objects.get(name="vault-sync")
    assert policy.application == application
    assert application.scopes == [Scope.RECOVERY_BUNDLE]
    assert tokens.matches(token, application.token_hash)
    assert "root-credentials" in output
    response = client.get("/api/v1/recovery/root-credentials/bundle",
                          HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert crypto.verify_bundle(response.content)
    bound = AuditEvent.objects.get(kind=EventKind.RECOVERY_APPLICATION_BOUND)
    assert bound.target_id == str(policy.pk) and bound.data["application"] == "vault-sync"
    assert bound.deliveries.filter(recipient=reviewer.email).exists()
    assert token not in str(bound.data)
    assert AuditEvent.objects.filter(kind=EventKind.APPLICATION_CREATED,
                                     target_id=str(application.pk)).exists()
    assert policy.history.first().application_id == application.pk


def test_create_application_with_a_policy_keeps_other_scopes_it_was_given(policy):
    run("create_application", "vault-sync", "--policy", "root-credentials",
        "--scope", Scope.AUDIT_READ)
    assert sorted(Application.objects.get().scopes) == sorted(
        [Scope.AUDIT_READ, Scope.RECOVERY_BUNDLE])


def test_a_policy_that_already_has_an_application_is_refused(policy):
    run("create_application", "first", "--policy", "root-credentials")
    with pytest.raises(CommandError, match="already has an authorized application"):
        run("create_application", "second", "--policy", "root-credentials")
    policy.refresh_from_db()
    assert policy.application.name == "first"
    assert not Application.objects.filter(name="second").exists()


def test_an_unknown_policy_is_refused_and_nothing_is_created(db):
    with pytest.raises(CommandError, match="no recovery policy"):
        run("create_application", "vault-sync", "--policy", "nope")
    assert not Application.objects.exists()
    assert not AuditEvent.objects.filter(kind=EventKind.APPLICATION_CREATED).exists()


def test_create_application_without_a_policy_still_needs_a_scope(db):
    with pytest.raises(CommandError, match="--scope"):
        run("create_application", "pager")
    output = run("create_application", "pager", "--scope", Scope.ACCESS_READ)
    assert tokens.matches(printed_token(output), Application.objects.get().token_hash)


def test_expire_grants_ends_the_grants_past_their_expiry_now(owner, member):
    group = Group.objects.create(name="Production DB", slug="prod-db")
    group.owners.add(owner)
    group.break_glass_users.add(member)
    due = break_glass(group, actor=member, reason="disk full")
    Grant.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    output = run("expire_grants")
    assert output.strip() == "expired 1 grant"
    due.refresh_from_db()
    assert due.status == Grant.Status.EXPIRED and due.ended_at == due.expires_at
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED,
                                     target_id=str(due.pk)).count() == 1
    assert run("expire_grants").strip() == "expired 0 grants"


def test_a_disabled_policy_hands_out_no_bundle(client, policy):
    """Disabling a policy stops everything it reveals: the offline bundle too, even for its
    authorized application (403, audited)."""
    token = printed_token(run("create_application", "vault-sync", "--policy",
                              "root-credentials"))
    policy.refresh_from_db()
    policy.enabled = False
    policy.save(update_fields=["enabled"])
    response = client.get("/api/v1/recovery/root-credentials/bundle",
                          HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    refusal = AuditEvent.objects.get(kind=EventKind.BUNDLE_FETCHED)
    assert refusal.outcome == "denied" and "disabled" in refusal.reason

"""PostgreSQL with real threads: the last two confirmations arriving together break the glass
exactly once."""

import pytest

from audit.catalogue import EventKind
from audit.models import AuditEvent
from recovery import crypto, services
from recovery.models import RecoveryPolicy
from tests.audit.test_concurrency import run_in_threads
from tests.conftest import add_authenticator, current_totp, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_last_two_confirmations_together_break_the_glass_once():
    alice, bob, erin = (make_user(name) for name in ("alice", "bob", "erin"))
    devices = {user.username: add_authenticator(user) for user in (alice, bob, erin)}
    for user in (alice, bob, erin):
        services.enrol(user, f"{user.username} recovery passphrase")
    policy = RecoveryPolicy.objects.create(
        name="Root", slug="root", first_user=alice, second_user=bob, third_user=erin,
        required=3, enabled=True, signing_seed=crypto.new_signing_seed())
    attempt = services.start_attempt(policy, actor=alice, reason="outage",
                                     code=current_totp(devices["alice"]))
    late = [bob, erin]
    errors = run_in_threads(2, lambda index: services.confirm(
        attempt, actor=late[index], code=current_totp(devices[late[index].username])))
    # Both confirmations count; whichever commits second breaks the glass, once.
    assert errors == []
    assert attempt.confirmations.count() == 3
    assert AuditEvent.objects.filter(kind=EventKind.GLASS_BROKEN).count() == 1
    attempt.refresh_from_db()
    assert attempt.status == "broken"

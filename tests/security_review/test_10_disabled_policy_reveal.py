"""Item 10: once its policy is disabled, a broken attempt reveals nothing. A participant still
inside the reveal window asks for the credentials through the real page → 403, no secret on
the page, the refusal audited as recovery.refused, nothing marked viewed or rotation due."""

import pytest
from django.urls import reverse
from django_otp import devices_for_user

from audit.catalogue import EventKind
from audit.models import AuditEvent
from recovery import services
from recovery.models import EmergencyCredential, RecoveryAttempt
from tests.conftest import current_totp, make_user
from tests.recovery.helpers import enrolled_trio, root_policy

pytestmark = pytest.mark.django_db


def authenticator(user):
    """The user's confirmed authenticator app (the time-based device)."""
    return next(device for device in devices_for_user(user) if hasattr(device, "t0"))

SECRET = "disabled-policy-secret-7319"


@pytest.fixture
def broken(verified_client):
    """alice starts and bob confirms (2 of 3 needed) through the pages: the glass is broken
    and bob's reveal window is open. Returns the attempt, the policy and bob's client."""
    alice, bob, erin = enrolled_trio()
    policy = root_policy([alice, bob, erin], secret=SECRET)
    alices, bobs = verified_client(alice), verified_client(bob)
    alices.post(reverse("recovery:start", args=[policy.slug]), {
        "reason": "SSO down", "code": current_totp(authenticator(alice), 1)})
    attempt = RecoveryAttempt.objects.get()
    bobs.post(reverse("recovery:confirm", args=[attempt.pk]),
              {"code": current_totp(authenticator(bob), 1)})
    attempt.refresh_from_db()
    assert attempt.status == RecoveryAttempt.Status.BROKEN
    return attempt, policy, bobs


def disable(policy, *, actor) -> None:
    """What the admin's change form does when an administrator switches the policy off."""
    before = services.policy_rules(policy)
    policy.enabled = False
    policy.modified_by = actor
    policy.save()
    services.record_policy_change(policy, before, actor=actor, reason="holder left")


def test_a_disabled_policy_reveals_nothing(broken):
    attempt, policy, bobs = broken
    page = bobs.get(reverse("recovery:attempt", args=[attempt.pk]))
    assert b"Show credentials" in page.content  # the window is open before the change
    disable(policy, actor=make_user("ada", is_staff=True, is_superuser=True))

    response = bobs.post(reverse("recovery:reveal", args=[attempt.pk]))

    assert response.status_code == 403
    content = response.content.decode()
    assert SECRET not in content
    assert "disabled" in content
    assert "Show credentials" not in content
    refusal = AuditEvent.objects.filter(kind=EventKind.RECOVERY_REFUSED).get()
    assert (refusal.actor_label, refusal.outcome, refusal.target_id) == (
        "bob", "denied", str(attempt.pk))
    assert "disabled" in refusal.reason
    assert not AuditEvent.objects.filter(kind=EventKind.CREDENTIALS_VIEWED).exists()
    credential = EmergencyCredential.objects.get(policy=policy)
    assert (credential.rotation_due, credential.revealed_at) == (False, None)
    with pytest.raises(services.RecoveryRefused, match="disabled"):
        services.reveal(attempt, actor=attempt.initiator)
    assert AuditEvent.objects.filter(kind=EventKind.RECOVERY_REFUSED).count() == 2


def test_an_enabled_policy_still_reveals(broken):
    attempt, _, bobs = broken
    response = bobs.post(reverse("recovery:reveal", args=[attempt.pk]))
    assert response.status_code == 200
    assert SECRET in response.content.decode()
    assert AuditEvent.objects.filter(kind=EventKind.CREDENTIALS_VIEWED).count() == 1

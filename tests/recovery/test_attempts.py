"""Online quorum recovery through its services: start, confirm with fresh codes, break the glass
once, reveal to participants only within the window, rotation due; cancel, lapse."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent
from recovery import crypto, services
from recovery.models import EmergencyCredential, RecoveryAttempt, RecoveryPolicy
from tests.conftest import add_authenticator, current_totp, make_user
from tests.recovery.helpers import root_policy

pytestmark = pytest.mark.django_db

SECRET = "correct-root-password-7731"


@pytest.fixture
def policy(trio):
    return root_policy(trio, secret=SECRET)


def code(user, steps_ahead: int = 0) -> str:
    return current_totp(user.totpdevice_set.get(), steps_ahead)


def wrong(user) -> str:
    return f"{(int(code(user)) + 1) % 1_000_000:06d}"


def kinds() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("kind", flat=True))


def start(policy, user, reason="SSO is down"):
    return services.start_attempt(policy, actor=user, reason=reason, code=code(user))


def test_two_confirmations_break_the_glass_and_only_they_see_the_credentials(policy, trio):
    alice, bob, erin = trio
    attempt = start(policy, alice)
    assert attempt.status == "open" and attempt.confirmations.count() == 1
    with pytest.raises(services.RecoveryRefused):
        services.reveal(attempt, actor=alice)
    services.confirm(attempt, actor=bob, code=code(bob))
    attempt.refresh_from_db()
    assert attempt.status == "broken"
    assert attempt.reveal_until - attempt.broken_at == timedelta(minutes=15)
    shown = services.reveal(attempt, actor=bob)
    assert shown[0]["secret"] == SECRET and shown[0]["username"] == "root"
    assert services.reveal(attempt, actor=alice)[0]["secret"] == SECRET
    with pytest.raises(services.RecoveryRefused):
        services.reveal(attempt, actor=erin)  # did not confirm
    assert EmergencyCredential.objects.get().rotation_due
    assert kinds().count(EventKind.GLASS_BROKEN) == 1
    assert kinds().count(EventKind.CREDENTIALS_VIEWED) == 2


def test_the_reveal_window_closes(policy, trio):
    alice, bob, _ = trio
    attempt = start(policy, alice)
    services.confirm(attempt, actor=bob, code=code(bob))
    RecoveryAttempt.objects.update(reveal_until=timezone.now() - timedelta(seconds=1))
    attempt.refresh_from_db()
    with pytest.raises(services.RecoveryRefused, match="reveal window"):
        services.reveal(attempt, actor=bob)


def test_a_wrong_code_is_refused_and_audited(policy, trio):
    alice, bob, erin = trio
    with pytest.raises(services.RecoveryRefused, match="code"):
        services.start_attempt(policy, actor=alice, reason="x", code=wrong(alice))
    assert not RecoveryAttempt.objects.exists()
    attempt = start(policy, bob)
    with pytest.raises(services.RecoveryRefused, match="code"):
        services.confirm(attempt, actor=erin, code=wrong(erin))
    assert kinds().count(EventKind.RECOVERY_REFUSED) == 2
    attempt.refresh_from_db()
    assert attempt.status == "open" and attempt.confirmations.count() == 1


def test_confirming_twice_is_refused(policy, trio):
    alice, *_ = trio
    policy.required = 3
    policy.save()
    attempt = start(policy, alice)
    with pytest.raises(services.RecoveryError, match="already confirmed"):
        services.confirm(attempt, actor=alice, code=code(alice, steps_ahead=1))


def test_outsiders_and_users_of_another_policy_cannot_confirm(policy, trio):
    alice, *_ = trio
    mallory = make_user("mallory")
    add_authenticator(mallory)
    attempt = start(policy, alice)
    with pytest.raises(services.RecoveryRefused, match="not an authorized user"):
        services.confirm(attempt, actor=mallory, code=code(mallory))
    assert kinds()[-1] == EventKind.RECOVERY_REFUSED


def test_a_confirmation_after_the_window_lapses_the_attempt_once(policy, trio):
    alice, bob, _ = trio
    attempt = start(policy, alice)
    RecoveryAttempt.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(services.RecoveryError, match="window has closed"):
        services.confirm(attempt, actor=bob, code=code(bob))
    attempt.refresh_from_db()
    assert attempt.status == "lapsed"
    assert services.lapse_due_attempts() == 0
    assert kinds().count(EventKind.RECOVERY_LAPSED) == 1


def test_one_open_attempt_per_policy_and_cancel_is_idempotent(policy, trio):
    alice, bob, _ = trio
    attempt = start(policy, alice)
    with pytest.raises(services.RecoveryError, match="already open"):
        start(policy, bob)
    with pytest.raises(services.RecoveryRefused, match="initiator"):
        services.cancel(attempt, actor=bob)
    services.cancel(attempt, actor=alice)
    services.cancel(attempt, actor=alice)
    assert kinds().count(EventKind.RECOVERY_CANCELLED) == 1
    again = services.start_attempt(policy, actor=bob, reason="again",
                                   code=code(bob, steps_ahead=1))
    assert again.status == "open"


def test_a_disabled_policy_and_a_stranger_cannot_start(policy, trio):
    alice, *_ = trio
    stranger = make_user("sam")
    add_authenticator(stranger)
    with pytest.raises(services.RecoveryRefused):
        start(policy, stranger)
    policy.enabled = False
    policy.save()
    with pytest.raises(services.RecoveryError, match="not enabled"):
        start(policy, alice)


def test_a_one_of_one_policy_breaks_at_start(trio):
    alice, *_ = trio
    solo = RecoveryPolicy.objects.create(name="Solo", slug="solo", first_user=alice,
                                         required=1, enabled=True,
                                         signing_seed=crypto.new_signing_seed())
    assert start(solo, alice).status == "broken"


def test_rotation_is_due_until_recorded_with_a_daily_reminder(policy, trio):
    alice, bob, _ = trio
    attempt = start(policy, alice)
    services.confirm(attempt, actor=bob, code=code(bob))
    services.reveal(attempt, actor=bob)
    assert services.send_rotation_reminders() == 1
    assert services.send_rotation_reminders() == 0  # once a day
    credential = EmergencyCredential.objects.get()
    version = services.current_bundle(policy).version
    services.record_rotation(credential, actor=alice, secret="a-new-root-password-5512")
    credential.refresh_from_db()
    assert not credential.rotation_due
    assert services.current_bundle(policy).version == version + 1
    assert services.send_rotation_reminders() == 0


def test_the_bundle_is_reissued_when_a_holder_changes_passphrase(policy, trio):
    alice, *_ = trio
    version = services.current_bundle(policy).version
    services.enrol(alice, "a brand new passphrase for alice")
    assert services.current_bundle(policy).version == version + 1


def test_rotating_the_field_key_reencrypts_everything(policy, settings):
    from io import StringIO

    from django.core.management import call_command

    old = EmergencyCredential.objects.get().secret_encrypted
    settings.FIELD_ENCRYPTION_KEYS = [crypto.generate_field_key(), *settings.FIELD_ENCRYPTION_KEYS]
    out = StringIO()
    call_command("reencrypt_fields", stdout=out)
    # The credential, the signing seed, the bundle and the three holders' authenticator seeds.
    assert "6 row(s) re-encrypted" in out.getvalue()
    new = EmergencyCredential.objects.get().secret_encrypted
    assert new != old and not crypto.needs_reencryption(new)
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]  # the old key is gone
    assert crypto.decrypt_field(new) == SECRET
    policy.refresh_from_db()
    assert services.signing_fingerprint(policy)
    bundle = services.current_bundle(policy)
    assert crypto.bundle_fingerprint(crypto.decrypt_field(bundle.content).encode()) == (
        bundle.fingerprint)


def test_confirmations_of_users_the_policy_no_longer_names_do_not_count(policy, trio):
    alice, bob, _ = trio
    attempt = start(policy, alice)
    dave = make_user("dave")
    policy.first_user = dave  # alice, who started it, is replaced...
    policy.save()
    services.confirm(attempt, actor=bob, code=code(bob))
    attempt.refresh_from_db()
    assert attempt.status == "open"  # ...so bob's confirmation alone breaks nothing
    assert not services.may_reveal(attempt, alice)


def test_a_disabled_policy_takes_no_confirmation(policy, trio):
    alice, bob, _ = trio
    attempt = start(policy, alice)
    policy.enabled = False
    policy.save()
    with pytest.raises(services.RecoveryError, match="disabled"):
        services.confirm(attempt, actor=bob, code=code(bob))
    attempt.refresh_from_db()
    assert attempt.status == "open" and attempt.confirmations.count() == 1


def test_a_policy_change_cancels_its_open_attempt_and_tells_everyone(policy, trio):
    alice, _, erin = trio
    attempt = start(policy, alice)
    before = services.policy_rules(policy)
    policy.required = 1
    policy.save()
    services.record_policy_change(policy, before, actor=erin, reason="rota change")
    attempt.refresh_from_db()
    assert attempt.status == "cancelled"
    event = AuditEvent.objects.get(kind=EventKind.RECOVERY_POLICY_CHANGED)
    assert (event.reason, event.data["before"]["required"], event.data["after"]["required"]) == (
        "rota change", 2, 1)


def test_weak_passphrases_are_refused(trio):
    alice, *_ = trio
    for weak in ("aaaaaaaaaaaa", "password1234", "123456789012", "abababababab"):
        with pytest.raises(services.InvalidInput):
            services.enrol(alice, weak)


def test_an_unreadable_credential_does_not_hide_the_others(policy, trio, settings):
    alice, bob, _ = trio
    broken = EmergencyCredential(policy=policy, name="Old key",
                                 secret_encrypted=crypto.encrypt_field("x"))
    broken.save()
    EmergencyCredential.objects.filter(pk=broken.pk).update(
        secret_encrypted="enc1:00000000:AAAA")
    attempt = start(policy, alice)
    services.confirm(attempt, actor=bob, code=code(bob))
    shown = {item["name"]: item for item in services.reveal(attempt, actor=bob)}
    assert shown["Cloud root"]["secret"] == SECRET and shown["Old key"]["unreadable"]


def test_a_policy_always_has_a_signing_key(trio):
    alice, *_ = trio
    policy = RecoveryPolicy.objects.create(name="Bare", slug="bare", first_user=alice)
    assert services.signing_fingerprint(policy)

"""A policy as the recovery tests build it: alice, bob and erin enrolled, 2 of them needed,
one sealed credential and a current offline bundle."""

from recovery import services
from recovery.models import EmergencyCredential, RecoveryPolicy
from tests.conftest import add_authenticator, make_user


def enrolled_trio() -> list:
    users = [make_user(name) for name in ("alice", "bob", "erin")]
    for user in users:
        add_authenticator(user)
        services.enrol(user, f"{user.username} recovery passphrase")
    return users


def root_policy(trio, *, secret: str) -> RecoveryPolicy:
    alice, bob, erin = trio
    policy = RecoveryPolicy.objects.create(
        name="Root credentials", slug="root-credentials", first_user=alice, second_user=bob,
        third_user=erin, required=2, enabled=True, signing_seed=services.new_signing_seed())
    credential = EmergencyCredential(policy=policy, name="Cloud root")
    services.set_credential(credential, username="root", secret=secret)
    credential.save()
    services.issue_bundle(policy)
    return policy

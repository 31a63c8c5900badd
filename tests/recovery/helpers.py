"""A policy as the recovery tests build it: alice, bob and erin (or alice and bob) enrolled,
2 of them needed, one sealed credential and a current offline bundle."""

from recovery import crypto, services
from recovery.models import EmergencyCredential, RecoveryPolicy
from tests.conftest import add_authenticator, make_user


def enrolled(*usernames: str) -> list:
    users = [make_user(name) for name in usernames]
    for user in users:
        add_authenticator(user)
        services.enrol(user, f"{user.username} recovery passphrase")
    return users


def enrolled_trio() -> list:
    return enrolled("alice", "bob", "erin")


def root_policy(holders, *, secret: str, name: str = "Root credentials",
                slug: str = "root-credentials") -> RecoveryPolicy:
    first, second, *third = holders
    policy = RecoveryPolicy.objects.create(
        name=name, slug=slug, first_user=first, second_user=second,
        third_user=third[0] if third else None, required=2, enabled=True,
        signing_seed=crypto.new_signing_seed())
    credential = EmergencyCredential(policy=policy, name="Cloud root")
    services.set_credential(credential, username="root", secret=secret)
    credential.save()
    services.issue_bundle(policy)
    return policy

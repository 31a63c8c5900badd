"""The demo recovery policy of SPEC §4: root-credentials, alice, bob and erin, 2 required, one
demo credential; each enrolled with the passphrase "<username> recovery demo". Idempotent."""

from django.db import transaction

from accounts.models import User
from recovery import crypto, services
from recovery.models import EmergencyCredential, RecoveryEnrolment, RecoveryPolicy

HOLDERS = ("alice", "bob", "erin")
DEMO_SECRET = "demo-root-password-change-me"  # noqa: S105 (a demo value, printed as such)


def demo_passphrase(username: str) -> str:
    return f"{username} recovery demo"


@transaction.atomic
def seed_recovery() -> RecoveryPolicy:
    users = [User.objects.get(username=username) for username in HOLDERS]
    policy = RecoveryPolicy.objects.filter(slug="root-credentials").first()
    if policy is None:
        policy = RecoveryPolicy(slug="root-credentials", signing_seed=crypto.new_signing_seed())
    policy.name = "Root credentials"
    policy.description = "The cloud account's root login, for when single sign-on is down."
    policy.first_user, policy.second_user, policy.third_user = users
    policy.required = 2
    policy.save()
    credential = EmergencyCredential.objects.filter(policy=policy, name="Cloud root account")
    if not credential.exists():
        demo = EmergencyCredential(policy=policy, name="Cloud root account")
        services.set_credential(demo, username="root@example.org",
                                secret=DEMO_SECRET,
                                notes="MFA device: the fire safe, shelf 2.")
        demo.save()
    for user in users:
        if not RecoveryEnrolment.objects.filter(user=user).exists():
            services.enrol(user, demo_passphrase(user.username))  # re-issues the bundle
    policy.enabled = True
    policy.save()
    if services.current_bundle(policy) is None:
        services.issue_bundle(policy)
    return policy

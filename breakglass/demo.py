"""The demo organisation of SPEC §4, for trying every path in minutes. Idempotent."""

from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.db import transaction

from accounts.models import SECURITY_REVIEWERS_GROUP, User
from accounts.services import regenerate_backup_codes

DEMO_USERS = [
    # username, role shown on sign-in, mobile
    ("admin", "administrator (superuser)", ""),
    ("alice", "break-glass user", "+15555550101"),
    ("bob", "group owner, website manager", "+15555550102"),
    ("carol", "on call", "+15555550103"),
    ("dave", "member", ""),
    ("erin", "security reviewer", "+15555550105"),
]


@dataclass
class DemoSignIn:
    username: str
    role: str
    backup_codes: list[str]


@transaction.atomic
def seed_demo(password: str) -> list[DemoSignIn]:
    """Create or refresh the demo users. Each run issues fresh backup codes (only their hashes
    are kept, so the previous ones cannot be printed again)."""
    reviewers, _ = Group.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)
    sign_ins = []
    for username, role, mobile in DEMO_USERS:
        user, _ = User.objects.get_or_create(username=username)
        user.email = f"{username}@example.org"
        user.mobile = mobile
        user.is_staff = user.is_superuser = username == "admin"
        user.set_password(password)
        user.save()
        if username == "erin":
            user.groups.add(reviewers)
        codes = regenerate_backup_codes(user, actor=None)
        sign_ins.append(DemoSignIn(username, role, codes))
    return sign_ins

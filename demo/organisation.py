"""The demo organisation of SPEC §4, for trying every path in minutes. Idempotent."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from accounts.models import SECURITY_REVIEWERS_GROUP, User
from accounts.services import issue_backup_codes
from breakglass.models import Group as CatalogGroup
from demo.connectors import seed_database_role
from demo.recovery import seed_recovery
from demo.websites import seed_website
from oncall.models import Schedule, Shift
from risk.incidents import upsert_incident
from risk.models import Sensitivity

DEMO_USERS = [
    # username, role shown on sign-in, mobile
    ("admin", "administrator (superuser)", ""),
    ("alice", "break-glass user", "+15555550101"),
    ("bob", "group owner, website manager", "+15555550102"),
    ("carol", "on call", "+15555550103"),
    ("dave", "member", ""),
    ("erin", "security reviewer", "+15555550105"),
]


DEMO_GROUPS = [
    # slug, name, sensitivity, description
    ("prod-database", "Production database (admin role)", Sensitivity.CRITICAL,
     "The administrator role on the production PostgreSQL cluster."),
    ("breakglass-prod-database", "Break-glass: production database", Sensitivity.CRITICAL,
     "Contains the production database group; for whoever is on call."),
    ("primary-oncall", "Primary on-call", Sensitivity.MEDIUM,
     "Whoever is on call now for the primary rota."),
    ("staging", "Staging environment", Sensitivity.LOW,
     "Administrator access to the staging environment."),
]


DEMO_INCIDENT = "INC-2041"


@dataclass
class DemoSignIn:
    username: str
    role: str
    backup_codes: list[str]


@dataclass
class Demo:
    sign_ins: list[DemoSignIn]
    connector_note: str


@transaction.atomic
def seed_demo(password: str) -> Demo:
    """Create or refresh the demo users. Each run issues fresh backup codes (only their hashes
    are kept, so the previous ones cannot be printed again)."""
    reviewers, _ = Group.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)
    sign_ins = []
    for username, role, mobile in DEMO_USERS:
        user, _ = User.objects.get_or_create(username=username)
        user.email = f"{username}@example.org"
        user.mobile = mobile
        user.is_staff = user.is_superuser = username == "admin"
        # The demo keeps the local login when a provider is configured (README).
        user.may_use_local_login = True
        user.set_password(password)
        user.save()
        if username == "erin":
            user.groups.add(reviewers)
        codes = issue_backup_codes(user, actor=None)
        sign_ins.append(DemoSignIn(username, role, codes))
    seed_groups()
    seed_recovery()
    seed_website()
    return Demo(sign_ins, seed_database_role())


def seed_groups() -> None:
    users = {user.username: user for user in User.objects.filter(
        username__in=[name for name, _, _ in DEMO_USERS])}
    groups = {}
    for slug, name, sensitivity, description in DEMO_GROUPS:
        groups[slug], _ = CatalogGroup.objects.update_or_create(
            slug=slug,
            defaults={"name": name, "sensitivity": sensitivity, "description": description},
        )
        groups[slug].owners.add(users["bob"])
    groups["prod-database"].break_glass_users.add(users["alice"])
    groups["breakglass-prod-database"].contains.add(groups["prod-database"])
    # Opal's pattern: the break-glass group is requestable and approved at once for whoever
    # is on call now; the on-call group takes its members from the primary rota.
    rota = seed_rota(users["carol"])
    groups["primary-oncall"].members.remove(users["carol"])
    settings = {
        "primary-oncall": {"members_from_schedule": rota},
        "breakglass-prod-database": {"requestable": True, "request_max_minutes": 4 * 60,
                                     "auto_approve_group": groups["primary-oncall"]},
        "staging": {"requestable": True, "request_max_minutes": 3 * 24 * 60,
                    "approvals_needed": 1},
    }
    for slug, values in settings.items():
        for field, value in values.items():
            setattr(groups[slug], field, value)
        groups[slug].save()
    # An open SEV1 from the pager: under it, the production groups' risk rule (critical ×
    # SEV1) allows self-service with a step-up code, for at most 4 hours.
    upsert_incident(external_id=DEMO_INCIDENT, title="Primary database refuses connections",
                    severity="sev1", status="open", url="https://pager.example.org/INC-2041",
                    groups=["prod-database", "breakglass-prod-database"], actor=None)

def seed_rota(on_call: User) -> Schedule:
    """The primary rota, with `on_call` on call now (a week from today's midnight, UTC)."""
    rota, _ = Schedule.objects.get_or_create(
        slug="primary-oncall", defaults={"name": "Primary on-call rota",
                                         "description": "Who answers the pager."})
    now = timezone.now()
    if not rota.shifts.filter(user=on_call, starts_at__lte=now, ends_at__gt=now).exists():
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        rota.shifts.filter(user=on_call, ends_at__gt=start).delete()
        Shift.objects.create(schedule=rota, user=on_call, starts_at=start,
                             ends_at=start + timedelta(days=7))
    return rota

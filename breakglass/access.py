"""The one place access is decided. Everything that asks "may this user use this group now?"
(pages, the API, connectors) calls `decide()`.

One SQL query at any nesting depth (breakglass/sql.py): a recursive CTE walks up the groups
that contain the target (UNION stops at cycles), then permanent memberships, grants, on-call
shifts (a group may take its members from an on-call schedule) and directory groups (or from
a group the identity provider pushes over SCIM) are looked up in all of them; by id for pages
and connectors, by name for the API, the same decision either way. A grant counts only while
`expires_at` is in the future, compared with the clock at the moment of the decision, so
access ends at the exact instant even when no worker has run."""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone

from breakglass import sql
from breakglass.models import Grant, Group


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    # member, grant, on_call, directory, or nested (through a containing group)
    via: str | None = None
    grant_id: int | None = None
    expires_at: datetime | None = None


def decide(user, group: Group | int, at: datetime | None = None) -> AccessDecision:
    if user is None or not getattr(user, "is_active", False):
        return AccessDecision(False)
    group_id = group if isinstance(group, int) else group.pk
    rows = sql.access_rows(user=user.pk, group=group_id, at=at or timezone.now())
    return _decision(rows)[2]


def decide_by_name(username: str, slug: str, at: datetime | None = None):
    """The API's access check in one query, names included. Returns (user found, group found,
    decision)."""
    rows = sql.access_rows(user=username, group=slug, at=at or timezone.now(), by_name=True)
    return _decision(rows)


def _decision(rows: list[sql.AccessRow]) -> tuple[bool, bool, AccessDecision]:
    """(person found, group found, decision) from the decision query's rows: an unknown or
    deactivated person has no access, whatever else the rows say."""
    target = next((row.via_group for row in rows if row.kind == "target"), None)
    person = next((row for row in rows if row.kind == "person"), None)
    if target is None or person is None or not person.grant_id:
        return person is not None, target is not None, AccessDecision(False)
    return True, True, _interpret([row for row in rows if row.kind in VIA_KINDS], target)


VIA_KINDS = {"member", "grant", "on_call", "directory"}
# Ways that last until someone changes them, not until an instant.
STANDING_KINDS = {"member", "directory"}


def _interpret(rows: list[sql.AccessRow], group_id: int) -> AccessDecision:
    if not rows:
        return AccessDecision(False)

    # Prefer what lasts: a permanent membership (own, then through the directory), then the
    # grant or shift that ends last; direct before nested.
    def rank(row: sql.AccessRow):
        return (row.kind in STANDING_KINDS, row.kind == "member", row.via_group == group_id,
                row.ends_at or _NEVER)

    best = max(rows, key=rank)
    via = best.kind if best.via_group == group_id else "nested"
    return AccessDecision(True, via, best.grant_id, best.ends_at)


_NEVER = datetime.min.replace(tzinfo=UTC)


def _standing_over(found: AccessDecision | None, via: str) -> AccessDecision:
    """A standing way in wins over a grant or shift that ends, as in `_interpret`."""
    if found is not None and found.via in STANDING_KINDS:
        return found
    return AccessDecision(True, via)


def has_access(user, group: Group | int, at: datetime | None = None) -> bool:
    return decide(user, group, at).allowed


def access_by_group(user, at: datetime | None = None) -> dict[int, AccessDecision]:
    """The user's access to every group at once, in five queries whatever the catalog's
    size: memberships, live grants, shifts on call now, directory groups, then every group
    reachable from them through nesting. Allows exactly what `decide()` allows, group by group
    (tests/breakglass/test_access_equivalence.py); only the `via` shown may differ where two
    ways reach the same group."""
    if user is None or not user.is_active:
        return {}
    at = at or timezone.now()
    decisions: dict[int, AccessDecision] = {}
    for group_id in user.member_groups.values_list("pk", flat=True):
        decisions[group_id] = AccessDecision(True, "member")
    for grant_id, group_id, expires in Grant.objects.active(at).filter(user=user).values_list(
            "pk", "group_id", "expires_at"):
        decisions.setdefault(group_id, AccessDecision(True, "grant", grant_id, expires))
    on_call = Group.objects.filter(
        members_from_schedule__shifts__user=user, members_from_schedule__shifts__starts_at__lte=at,
        members_from_schedule__shifts__ends_at__gt=at,
    ).values_list("pk", "members_from_schedule__shifts__ends_at")
    for group_id, ends in on_call:
        decisions.setdefault(group_id, AccessDecision(True, "on_call", None, ends))
    for group_id in Group.objects.filter(
            members_from_directory_group__members=user).values_list("pk", flat=True):
        decisions[group_id] = _standing_over(decisions.get(group_id), "directory")
    for group_id in sql.reachable_from(list(decisions)):
        decisions.setdefault(group_id, AccessDecision(True, "nested"))
    return decisions

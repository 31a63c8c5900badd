"""The one place access is decided. Everything that asks "may this user use this group now?"
(pages, the API, connectors) calls `decide()`.

One SQL query at any nesting depth: a recursive CTE walks up the groups that contain the target
(UNION stops at cycles), then permanent memberships, grants and on-call shifts (a group may
take its members from an on-call schedule) are looked up in all of them.
A grant counts only while `expires_at` is in the future, compared with the clock at the moment
of the decision, so access ends at the exact instant even when no worker has run."""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.utils import timezone

from audit.db import prepared_cursor
from breakglass.models import Grant, Group

_DECISION_SQL = """
WITH RECURSIVE ancestors(id) AS (
    SELECT CAST(%s AS BIGINT)
    UNION
    SELECT c.from_group_id FROM breakglass_group_contains c
    JOIN ancestors a ON c.to_group_id = a.id
)
SELECT 'member', m.group_id, NULL, NULL
  FROM breakglass_group_members m JOIN ancestors a ON m.group_id = a.id
 WHERE m.user_id = %s
UNION ALL
SELECT 'grant', g.group_id, g.id, g.expires_at
  FROM breakglass_grant g JOIN ancestors a ON g.group_id = a.id
 WHERE g.user_id = %s AND g.status = %s AND g.expires_at > %s
UNION ALL
SELECT 'on_call', grp.id, NULL, s.ends_at
  FROM breakglass_group grp JOIN ancestors a ON grp.id = a.id
  JOIN oncall_shift s ON s.schedule_id = grp.members_from_schedule_id
 WHERE s.user_id = %s AND s.starts_at <= %s AND s.ends_at > %s
"""


_BY_NAME_SQL = """
WITH RECURSIVE target(id) AS (SELECT id FROM breakglass_group WHERE slug = %s),
person(id, active) AS (SELECT id, is_active FROM accounts_user WHERE username = %s),
ancestors(id) AS (
    SELECT CAST(id AS BIGINT) FROM target
    UNION
    SELECT c.from_group_id FROM breakglass_group_contains c
    JOIN ancestors a ON c.to_group_id = a.id
)
SELECT 'target', id, CAST(NULL AS BIGINT), CAST(NULL AS TIMESTAMP WITH TIME ZONE) FROM target
UNION ALL
SELECT 'person', id, CASE WHEN active THEN 1 ELSE 0 END, NULL FROM person
UNION ALL
SELECT 'member', m.group_id, NULL, NULL
  FROM breakglass_group_members m JOIN ancestors a ON m.group_id = a.id
  JOIN person p ON m.user_id = p.id
UNION ALL
SELECT 'grant', g.group_id, g.id, g.expires_at
  FROM breakglass_grant g JOIN ancestors a ON g.group_id = a.id
  JOIN person p ON g.user_id = p.id
 WHERE g.status = %s AND g.expires_at > %s
UNION ALL
SELECT 'on_call', grp.id, NULL, s.ends_at
  FROM breakglass_group grp JOIN ancestors a ON grp.id = a.id
  JOIN oncall_shift s ON s.schedule_id = grp.members_from_schedule_id
  JOIN person p ON s.user_id = p.id
 WHERE s.starts_at <= %s AND s.ends_at > %s
"""


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    via: str | None = None  # member, grant, on_call, or nested (through a containing group)
    grant_id: int | None = None
    expires_at: datetime | None = None


def decide(user, group: Group | int, at: datetime | None = None) -> AccessDecision:
    if user is None or not getattr(user, "is_active", False):
        return AccessDecision(False)
    group_id = group if isinstance(group, int) else group.pk
    moment = connection.ops.adapt_datetimefield_value(at or timezone.now())
    with prepared_cursor() as cursor:
        cursor.execute(_DECISION_SQL, [group_id, user.pk, user.pk, Grant.Status.ACTIVE, moment,
                                       user.pk, moment, moment])
        rows = cursor.fetchall()
    return _interpret(rows, group_id)


def decide_by_name(username: str, slug: str, at: datetime | None = None):
    """The API's access check in one query, names included. Returns (user found, group found,
    decision)."""
    moment = connection.ops.adapt_datetimefield_value(at or timezone.now())
    with prepared_cursor() as cursor:
        cursor.execute(_BY_NAME_SQL, [slug, username, Grant.Status.ACTIVE, moment, moment,
                                      moment])
        rows = cursor.fetchall()
    target = next((row[1] for row in rows if row[0] == "target"), None)
    person = next((row for row in rows if row[0] == "person"), None)
    if target is None or person is None or not person[2]:
        return person is not None, target is not None, AccessDecision(False)
    access_rows = [row for row in rows if row[0] in {"member", "grant", "on_call"}]
    return True, True, _interpret(access_rows, target)


def _interpret(rows: list, group_id: int) -> AccessDecision:
    if not rows:
        return AccessDecision(False)

    # Prefer what lasts: a permanent membership, then the grant or shift that ends last;
    # direct before nested.
    def rank(row):
        kind, via_group, _, expires = row
        return (kind == "member", via_group == group_id, _as_datetime(expires) or _NEVER)

    kind, via_group, grant_id, expires = max(rows, key=rank)
    via = kind if via_group == group_id else "nested"
    return AccessDecision(True, via, grant_id, _as_datetime(expires))


_NEVER = datetime.min.replace(tzinfo=UTC)


def _as_datetime(value) -> datetime | None:
    """Timestamps come back as text from SQLite's UNIONs."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def has_access(user, group: Group | int, at: datetime | None = None) -> bool:
    return decide(user, group, at).allowed


_REACH_SQL = """
WITH RECURSIVE reach(id) AS (
    SELECT id FROM breakglass_group WHERE id IN ({roots})
    UNION
    SELECT c.to_group_id FROM breakglass_group_contains c JOIN reach r ON c.from_group_id = r.id
)
SELECT id FROM reach
"""


def access_by_group(user, at: datetime | None = None) -> dict[int, AccessDecision]:
    """The user's access to every group at once, in four queries whatever the catalog's
    size: memberships, live grants, shifts on call now, then every group reachable from them
    through nesting."""
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
    for group_id in reachable_from(list(decisions)):
        decisions.setdefault(group_id, AccessDecision(True, "nested"))
    return decisions


# The same walk down from one group, as a subquery (connectors use it).
REACH_IDS_SQL = _REACH_SQL.format(roots="%s")


def reachable_from(group_ids: list[int]) -> set[int]:
    """The groups themselves and every group they contain, transitively."""
    if not group_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_REACH_SQL.format(roots=", ".join(["%s"] * len(group_ids))), group_ids)
        return {row[0] for row in cursor.fetchall()}

"""The hand-written SQL of breakglass's hot paths, in one place: the access decision, the
break-glass locking read (with the anomaly questions as extra columns) and the activation's
writes. Table names come from each model's `_meta`; parameters are named; rows are read by
column name into small dataclasses, never by position.

Everything else uses the ORM. These statements exist because they are each one round trip
where the ORM needs several (bench/api_access.py measures them)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import NamedTuple

from django.db import connection
from django.utils import timezone

from accounts.models import DirectoryGroup, User
from audit.catalogue import ActorType
from audit.db import fast_insert, insert_statement, load_instance, prepared_cursor
from audit.models import AuditEvent
from breakglass.models import Connector, ConnectorLogin, Grant, Group
from oncall.models import Shift
from risk.models import RiskRule

GRANTS = Grant._meta.db_table
GROUPS = Group._meta.db_table
CONTAINS = Group.contains.through._meta.db_table
MEMBERS = Group.members.through._meta.db_table
DIRECTORY_MEMBERS = DirectoryGroup.members.through._meta.db_table
BREAK_GLASS_USERS = Group.break_glass_users.through._meta.db_table
USERS = User._meta.db_table
SHIFTS = Shift._meta.db_table
RULES = RiskRule._meta.db_table
EVENTS = AuditEvent._meta.db_table
CONNECTORS = Connector._meta.db_table
CONNECTOR_LOGINS = ConnectorLogin._meta.db_table

# The conflict target of the one_open_grant_per_user_and_group constraint, from the same
# statuses the constraint is built from.
OPEN_GRANT_CONFLICT = "(user_id, group_id) WHERE status IN ({})".format(
    ", ".join(f"'{status}'" for status in Grant.OPEN_STATUSES))


_COLUMN_NAMES: dict[str, list[str]] = {}


def check_columns(cursor, statement: str, names: tuple[str, ...]) -> None:
    """The statement's columns must be `names`, in that order: checked against the cursor
    once per statement, so a row can then be taken as the named tuple it is."""
    if statement not in _COLUMN_NAMES:
        found = [column[0] for column in cursor.description]
        if tuple(found) != names:
            raise RuntimeError(f"expected the columns {names}, the statement gives {found}")
        _COLUMN_NAMES[statement] = found


def named_rows(cursor, statement: str) -> list[dict]:
    """The rows of `statement` just executed, as dicts by column name. The names are read
    from the cursor once per statement (building the description costs more than the
    access check's own Python work)."""
    names = _COLUMN_NAMES.get(statement)
    if names is None:
        names = _COLUMN_NAMES[statement] = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# --- The access decision ---------------------------------------------------------------------

# Who is asking and for what, by id (pages, connectors) or by name (the API): the decision
# below is the same either way. By id, the caller holds the user and has checked the account
# is active (decide() does), so no lookup is spent on either.
_BY_ID = """target(id) AS (SELECT CAST(%(group)s AS BIGINT)),
person(id, active) AS (SELECT CAST(%(user)s AS BIGINT), TRUE)"""
_BY_NAME = """target(id) AS (SELECT id FROM {groups} WHERE slug = %(group)s),
person(id, active) AS (SELECT id, is_active FROM {users} WHERE username = %(user)s)"""

# One query at any nesting depth: walk up the groups that contain the target (UNION stops at
# cycles), then look up permanent memberships, live grants and on-call shifts in all of them.
# A grant counts only while its expiry lies after the moment of the decision, so access ends
# at the exact instant even when no worker has run.
_DECISION = """WITH RECURSIVE {lookup},
ancestors(id) AS (
    SELECT CAST(id AS BIGINT) FROM target
    UNION
    SELECT c.from_group_id FROM {contains} c JOIN ancestors a ON c.to_group_id = a.id
)
SELECT 'target' AS kind, id AS via_group, CAST(NULL AS BIGINT) AS grant_id,
       CAST(NULL AS TIMESTAMP WITH TIME ZONE) AS ends_at FROM target
UNION ALL
SELECT 'person', id, CASE WHEN active THEN 1 ELSE 0 END, NULL FROM person
UNION ALL
SELECT 'member', m.group_id, NULL, NULL
  FROM {members} m JOIN ancestors a ON m.group_id = a.id JOIN person p ON m.user_id = p.id
UNION ALL
SELECT 'grant', g.group_id, g.id, g.expires_at
  FROM {grants} g JOIN ancestors a ON g.group_id = a.id JOIN person p ON g.user_id = p.id
 WHERE g.status = %(active)s AND g.expires_at > %(at)s
UNION ALL
SELECT 'on_call', grp.id, NULL, s.ends_at
  FROM {groups} grp JOIN ancestors a ON grp.id = a.id
  JOIN {shifts} s ON s.schedule_id = grp.members_from_schedule_id
  JOIN person p ON s.user_id = p.id
 WHERE s.starts_at <= %(at)s AND s.ends_at > %(at)s
UNION ALL
SELECT 'directory', grp.id, NULL, NULL
  FROM {groups} grp JOIN ancestors a ON grp.id = a.id
  JOIN {directory_members} dm ON dm.directorygroup_id = grp.members_from_directory_group_id
  JOIN person p ON dm.user_id = p.id"""

_TABLES = {"groups": GROUPS, "users": USERS, "contains": CONTAINS, "members": MEMBERS,
           "grants": GRANTS, "shifts": SHIFTS, "directory_members": DIRECTORY_MEMBERS}
DECISION_BY_ID_SQL = _DECISION.format(lookup=_BY_ID.format(**_TABLES), **_TABLES)
DECISION_BY_NAME_SQL = _DECISION.format(lookup=_BY_NAME.format(**_TABLES), **_TABLES)


class AccessRow(NamedTuple):
    kind: str  # target, person, member, grant, on_call, directory
    via_group: int
    grant_id: int | None
    ends_at: datetime | None


def access_rows(*, user, group, at: datetime, by_name: bool = False) -> list[AccessRow]:
    """The rows the decision is made from: the target and the person as found (a person row's
    grant_id is 1 when the account is active), then every way the person reaches the target."""
    params = {"group": group, "user": user, "active": Grant.Status.ACTIVE,
              "at": connection.ops.adapt_datetimefield_value(at)}
    statement = DECISION_BY_NAME_SQL if by_name else DECISION_BY_ID_SQL
    with prepared_cursor() as cursor:
        cursor.execute(statement, params)
        check_columns(cursor, statement, AccessRow._fields)
        rows = cursor.fetchall()
    # The hot path of every access check: the row is the named tuple, its columns checked.
    return [AccessRow(kind, via_group, grant_id, _as_datetime(ends_at))
            for kind, via_group, grant_id, ends_at in rows]


def _as_datetime(value) -> datetime | None:
    """Timestamps come back as text from SQLite's UNIONs."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


_REACH = f"""WITH RECURSIVE reach(id) AS (
    SELECT id FROM {GROUPS} WHERE id IN ({{roots}})
    UNION
    SELECT c.to_group_id FROM {CONTAINS} c JOIN reach r ON c.from_group_id = r.id
)
SELECT id FROM reach"""  # noqa: S608 (names only)
# The walk down from one group, as a subquery (connectors use it with one bound id).
REACH_IDS_SQL = _REACH.format(roots="%s")
# The same walk from a group named by its slug.
REACH_IDS_BY_SLUG_SQL = _REACH.format(
    roots=f"SELECT id FROM {GROUPS} WHERE slug = %s")  # noqa: S608 (a table name only)


def reachable_from(group_ids: list[int]) -> set[int]:
    """The groups themselves and every group they contain, transitively."""
    if not group_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_REACH.format(roots=", ".join(["%s"] * len(group_ids))), group_ids)
        return {row[0] for row in cursor.fetchall()}


# --- Everyone with access to one group (reconciliation) ---------------------------------------

# The decision above turned around: every active user who reaches the group through a
# membership, a live grant, a shift on call or a directory group, in any group that contains
# it. One statement for the whole group, whatever its size
# (tests/breakglass/test_access_equivalence.py holds it equal to decide() user by user).
_HOLDERS = """WITH RECURSIVE ancestors(id) AS (
    SELECT CAST(%(group)s AS BIGINT)
    UNION
    SELECT c.from_group_id FROM {contains} c JOIN ancestors a ON c.to_group_id = a.id
)
SELECT u.id, u.username FROM {users} u
 WHERE u.is_active AND u.id IN (
    SELECT m.user_id FROM {members} m JOIN ancestors a ON m.group_id = a.id
    UNION
    SELECT g.user_id FROM {grants} g JOIN ancestors a ON g.group_id = a.id
     WHERE g.status = %(active)s AND g.expires_at > %(at)s
    UNION
    SELECT s.user_id FROM {groups} grp JOIN ancestors a ON grp.id = a.id
      JOIN {shifts} s ON s.schedule_id = grp.members_from_schedule_id
     WHERE s.starts_at <= %(at)s AND s.ends_at > %(at)s
    UNION
    SELECT dm.user_id FROM {groups} grp JOIN ancestors a ON grp.id = a.id
      JOIN {directory_members} dm
        ON dm.directorygroup_id = grp.members_from_directory_group_id
 )""".format(**_TABLES)  # noqa: S608 (table names only)


# Users whose access through a grant has just ended: the grant passed its instant unrecorded,
# or ended in the last few minutes. Its revocation is Breakglass's own decision on its way
# through the outbox, which reconciliation may meet before the delivery does.
ENDING_WINDOW = timedelta(minutes=5)
_ENDING = """WITH RECURSIVE ancestors(id) AS (
    SELECT CAST(%(group)s AS BIGINT)
    UNION
    SELECT c.from_group_id FROM {contains} c JOIN ancestors a ON c.to_group_id = a.id
)
SELECT DISTINCT u.id, u.username FROM {grants} g JOIN ancestors a ON g.group_id = a.id
  JOIN {users} u ON u.id = g.user_id
 WHERE (g.status = %(active)s AND g.expires_at <= %(at)s)
    OR (g.status IN (%(expired)s, %(revoked)s) AND g.ended_at > %(since)s)"""
_ENDING = _ENDING.format(**_TABLES)  # table names only


def ending_holders(group_id: int, at: datetime) -> dict[int, str]:
    """Users whose grant reaching the group has just ended (see above): id → username."""
    adapt = connection.ops.adapt_datetimefield_value
    params = {"group": group_id, "active": Grant.Status.ACTIVE, "at": adapt(at),
              "expired": Grant.Status.EXPIRED, "revoked": Grant.Status.REVOKED,
              "since": adapt(at - ENDING_WINDOW)}
    with connection.cursor() as cursor:
        cursor.execute(_ENDING, params)
        return dict(cursor.fetchall())


def holders_of(group_id: int, at: datetime) -> dict[int, str]:
    """Every user with access to the group at `at`: id → username."""
    params = {"group": group_id, "active": Grant.Status.ACTIVE,
              "at": connection.ops.adapt_datetimefield_value(at)}
    with connection.cursor() as cursor:
        cursor.execute(_HOLDERS, params)
        return dict(cursor.fetchall())


# --- Anomaly questions -----------------------------------------------------------------------

FREQUENT_WINDOW = timedelta(days=7)
IP_MEMORY = timedelta(days=30)


@dataclass(frozen=True)
class FlagAnswers:
    """What the anomaly flags ask about one activation (risk.anomalies.flags_from reads it)."""

    recent_uses: int
    any_shift: bool
    on_call: bool
    accessed_before: bool
    familiar_ip: bool

    @classmethod
    def from_row(cls, row: dict) -> "FlagAnswers":
        return cls(int(row["recent_uses"]), bool(row["any_shift"]), bool(row["on_call"]),
                   bool(row["accessed_before"]), bool(row["familiar_ip"]))


@cache
def _flag_columns(*, with_ip: bool) -> str:
    """Five columns answering the flags' questions. Without an address (an application
    acting for the user) the last is a constant."""
    sources = ", ".join(f"'{source}'" for source in (Grant.Source.BREAK_GLASS, Grant.Source.API))
    familiar = f"""EXISTS (SELECT 1 FROM {EVENTS}
                WHERE actor_type = '{ActorType.USER}' AND actor_id = %(holder_text)s
                  AND ip = %(ip)s AND recorded_at >= %(ip_since)s
                  AND recorded_at < %(ip_before)s)""" if with_ip else "FALSE"  # noqa: S608
    return f"""
       (SELECT COUNT(*) FROM {GRANTS} WHERE user_id = %(holder)s
           AND source IN ({sources}) AND activated_at >= %(frequent_since)s) AS recent_uses,
       EXISTS (SELECT 1 FROM {SHIFTS}) AS any_shift,
       EXISTS (SELECT 1 FROM {SHIFTS} WHERE user_id = %(holder)s
                  AND starts_at <= %(now)s AND ends_at > %(now)s) AS on_call,
       EXISTS (SELECT 1 FROM {GRANTS} WHERE user_id = %(holder)s AND group_id = %(group)s
                  AND activated_at IS NOT NULL) AS accessed_before,
       {familiar} AS familiar_ip"""  # noqa: S608 (names only)


def _flag_params(holder, group, *, now: datetime, ip: str, session_began) -> dict:
    adapt = connection.ops.adapt_datetimefield_value
    params = {"holder": holder.pk, "group": group.pk, "now": adapt(now),
              "frequent_since": adapt(now - FREQUENT_WINDOW)}
    if ip:
        # Addresses seen only since this session signed in do not make an address familiar.
        before = min(session_began or now, now) - timedelta(seconds=60)
        params.update(holder_text=str(holder.pk), ip=ip, ip_since=adapt(now - IP_MEMORY),
                      ip_before=adapt(before))
    return params


def flag_answers(holder, group, *, now: datetime, ip: str = "",
                 session_began: datetime | None = None) -> FlagAnswers:
    """The anomaly questions alone (the break-glass path asks them within its locking read)."""
    statement = "SELECT " + _flag_columns(with_ip=bool(ip))
    with prepared_cursor() as cursor:
        cursor.execute(statement, _flag_params(holder, group, now=now, ip=ip,
                                               session_began=session_began))
        return FlagAnswers.from_row(named_rows(cursor, statement)[0])


# --- The break-glass locking read ------------------------------------------------------------

# A connector of the group, or of a group it contains, that needs a login the holder lacks.
_REACH_FROM_GROUP = f"""WITH RECURSIVE reach(id) AS (
    SELECT CAST(%(group)s AS BIGINT)
    UNION
    SELECT c.to_group_id FROM {CONTAINS} c JOIN reach r ON c.from_group_id = r.id
)"""  # noqa: S608 (names only)
_RULE_FIELDS = ["id", "self_service", "max_minutes", "approvals", "step_up", "alert_email",
                "alert_sms", "alert_webhook"]
_LOCK_GROUP = f"""
SELECT g.break_glass_minutes, g.sensitivity, g.armed_by_incident, g.end_grants_on_resolve,
       g.review_before_next,
       EXISTS (SELECT 1 FROM {BREAK_GLASS_USERS} b JOIN {USERS} u ON u.id = b.user_id
                WHERE b.group_id = g.id AND b.user_id = %(holder)s AND u.is_active)
           AS may_break_glass,
       EXISTS ({_REACH_FROM_GROUP}
               SELECT 1 FROM {CONNECTORS} k JOIN reach ON k.group_id = reach.id
                WHERE k.enabled AND k.logins = %(explicit)s AND NOT EXISTS (
                      SELECT 1 FROM {CONNECTOR_LOGINS} l
                       WHERE l.connector_id = k.id AND l.user_id = %(holder)s))
           AS login_missing,
       {", ".join(f"r.{name} AS rule_{name}" for name in _RULE_FIELDS)}, {{flags}}
  FROM {GROUPS} g
  LEFT JOIN {RULES} r ON r.sensitivity = g.sensitivity AND r.severity = %(severity)s
 WHERE g.id = %(group)s"""  # noqa: S608 (names only)


@dataclass(frozen=True)
class LockedGroup:
    """A group's break-glass settings as read under its row lock, whether the holder may break
    glass there, the risk rule cell for the asked severity, and the anomaly answers."""

    break_glass_minutes: int | None
    sensitivity: str
    armed_by_incident: bool
    end_grants_on_resolve: bool
    review_before_next: bool
    may_break_glass: bool
    login_missing: bool
    rule: RiskRule | None
    flags: FlagAnswers


def wait_for_holder(holder) -> None:
    """Share-lock the holder's account row before anything else is locked. A deprovisioning
    holds that row for update from its start (accounts/deprovisioning.py): a break glass then
    waits for it here and reads the account as it left it, instead of opening a grant the
    deprovisioning has already listed past, and instead of a deadlock between the two (this
    press holding the audit chain, that one the account row). SQLite serialises writers."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {USERS} WHERE id = %s FOR SHARE",  # noqa: S608
                           [holder.pk])


def lock_group_for_break_glass(group: Group, holder, *, severity: str, now: datetime,
                               ip: str = "", session_began=None) -> LockedGroup | None:
    """Lock the group's row (serialising activations of it: fifty presses at once give one
    activation and extensions) and read, in the same round trip, everything the decision
    needs. None when the group is gone."""
    sql = _LOCK_GROUP.format(flags=_flag_columns(with_ip=bool(ip)))
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE OF g"
    params = {**_flag_params(holder, group, now=now, ip=ip, session_began=session_began),
              "severity": severity, "explicit": Connector.Logins.EXPLICIT}
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        rows = named_rows(cursor, sql)
    if not rows:
        return None
    row = rows[0]
    rule = None
    if row["rule_id"] is not None:
        rule = load_instance(RiskRule, _RULE_FIELDS, [row[f"rule_{name}"] for name in _RULE_FIELDS])
    return LockedGroup(row["break_glass_minutes"], row["sensitivity"],
                       bool(row["armed_by_incident"]), bool(row["end_grants_on_resolve"]),
                       bool(row["review_before_next"]), bool(row["may_break_glass"]),
                       bool(row["login_missing"]), rule,
                       FlagAnswers.from_row(row))


# --- The activation's writes -----------------------------------------------------------------

def insert_open_grant(grant: Grant) -> bool:
    """Insert a new open grant unless the holder already has one for the group (the
    constraint decides, seeing what the lock's previous holder committed): False then."""
    return fast_insert(grant, unless_conflict=OPEN_GRANT_CONFLICT)


def insert_activation_rows(*, review, fanout, schedule) -> None:
    """The rows every activation writes besides the grant and its audit event: its review, its
    follow-up outbox row (`fanout`, a Delivery) and its expiry job (`schedule`, a django-q2
    Schedule). PostgreSQL writes the three in one statement; elsewhere one insert each."""
    if connection.vendor == "postgresql":
        fast_insert(schedule, with_first=[insert_statement(review), insert_statement(fanout)])
        return
    fast_insert(fanout)
    fast_insert(review)
    fast_insert(schedule)

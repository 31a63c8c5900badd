"""Anomaly flags raised when break glass activates (SPEC §2.7). They are stored on the grant
and its audit event, shown in the alerts, and make the alert high priority: security reviewers
then get an SMS even where the rule cell alerts by email only."""

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from audit.catalogue import ActorType
from audit.db import prepared_cursor
from audit.models import AuditEvent

FREQUENT_USES = 3  # more than this many in the window is flagged
FREQUENT_WINDOW = timedelta(days=7)
IP_MEMORY = timedelta(days=30)

FLAGS = {
    "frequent_use": "more than 3 break-glass uses by this user in 7 days",
    "not_on_call": "not on call at the time",
    "first_access": "first-ever access to this group",
    "new_ip": "a new IP address for this user (none of their last 30 days)",
    "outside_hours": "outside working hours",
}
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HOURS = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)-(mon|tue|wed|thu|fri|sat|sun) "
                    r"([01]\d|2[0-3]):([0-5]\d)-(?:([01]\d|2[0-3]):([0-5]\d)|(24):(00))$")


@dataclass(frozen=True)
class WorkingHours:
    first_day: int
    last_day: int
    opens: time
    closes: time
    zone: ZoneInfo

    def works_on(self, weekday: int) -> bool:
        if self.first_day <= self.last_day:
            return self.first_day <= weekday <= self.last_day
        return weekday >= self.first_day or weekday <= self.last_day  # "fri-mon" wraps

    def include(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        now, today = local.time(), local.weekday()
        if self.opens < self.closes:
            return self.works_on(today) and self.opens <= now < self.closes
        # A night shift ("22:00-06:00"): the hours after midnight belong to the day before.
        return ((self.works_on(today) and now >= self.opens)
                or (self.works_on((today - 1) % 7) and now < self.closes))


def working_hours() -> WorkingHours | None:
    """The WORKING_HOURS setting ("mon-fri 08:00-18:00"), or None when it is empty."""
    text = (settings.WORKING_HOURS or "").strip().lower()
    if not text:
        return None
    match = _HOURS.match(text)
    if not match:
        raise ImproperlyConfigured(
            f"WORKING_HOURS={text!r}: write it like 'mon-fri 08:00-18:00'.")
    first, last, open_h, open_m, close_h, close_m, midnight, _ = match.groups()
    closes = time.max if midnight else time(int(close_h), int(close_m))
    opens = time(int(open_h), int(open_m))
    if opens == closes:
        raise ImproperlyConfigured(f"WORKING_HOURS={text!r}: opening and closing are the same.")
    try:
        zone = ZoneInfo(settings.WORKING_HOURS_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError) as unknown:
        raise ImproperlyConfigured(
            f"WORKING_HOURS_TIME_ZONE={settings.WORKING_HOURS_TIME_ZONE!r} is not a known time "
            "zone (write it like Europe/Paris).") from unknown
    return WorkingHours(DAYS.index(first), DAYS.index(last), opens, closes, zone)


def check_working_hours(app_configs=None, **kwargs) -> list:
    """A system check, so that a bad setting stops the deployment at start, not at the first
    break glass."""
    from django.core.checks import Error

    try:
        working_hours()
    except ImproperlyConfigured as bad:
        return [Error(str(bad), id="risk.E001")]
    return []


def anomaly_flags(user, group, *, now: datetime, ip: str = "",
                  session_began: datetime | None = None) -> list[str]:
    """The flags of a break-glass activation by `user` on `group`, asked before it is written.
    `ip` is the user's own address (empty when an application acts for them), and
    `session_began` when their current session signed in: addresses seen only since then do
    not make an address familiar. The break-glass hot path asks the same questions as extra
    columns of its locking read (`flag_columns`), saving the round trip."""
    with prepared_cursor() as cursor:
        cursor.execute("SELECT " + flag_columns(with_ip=bool(ip)),
                       flag_params(user, group, now=now, ip=ip, session_began=session_began))
        return flags_from(cursor.fetchone(), now=now, ip=ip)


def flags_from(values, *, now: datetime, ip: str) -> list[str]:
    """The flags from the five columns of `flag_columns`."""
    recent_uses, any_shift, on_call, accessed_before, familiar_ip = values
    flags = []
    if recent_uses >= FREQUENT_USES:
        flags.append("frequent_use")
    # Only a deployment with on-call shifts can tell who is not on call.
    if any_shift and not on_call:
        flags.append("not_on_call")
    if not accessed_before:
        flags.append("first_access")
    if ip and not familiar_ip:
        flags.append("new_ip")
    try:
        hours = working_hours()
    except ImproperlyConfigured:
        # The system check reports it; access is never blocked by it, and an unknown
        # answer is flagged rather than let through quietly.
        hours = None
        flags.append("outside_hours")
    if hours is not None and not hours.include(now):
        flags.append("outside_hours")
    return flags


def flag_params(user, group, *, now: datetime, ip: str = "",
                session_began: datetime | None = None) -> list:
    adapt = connection.ops.adapt_datetimefield_value
    params = [user.pk, adapt(now - FREQUENT_WINDOW), user.pk, adapt(now), adapt(now),
              user.pk, group.pk]
    if ip:
        before = min(session_began or now, now) - timedelta(seconds=60)
        params += [str(user.pk), ip, adapt(now - IP_MEMORY), adapt(before)]
    return params


@cache
def flag_columns(*, with_ip: bool) -> str:
    """Five columns (with the placeholders `flag_params` fills) answering the flags' questions:
    recent uses, whether any shift exists, on call now, accessed before, address familiar.
    Without an address (an application acting for the user) the last is a constant."""
    from breakglass.models import Grant
    from oncall.models import Shift

    grants, shifts = Grant._meta.db_table, Shift._meta.db_table
    events = AuditEvent._meta.db_table
    sources = ", ".join(f"'{source}'" for source in (Grant.Source.BREAK_GLASS,
                                                      Grant.Source.API))
    familiar = f"""EXISTS (SELECT 1 FROM {events}
                WHERE actor_type = '{ActorType.USER}' AND actor_id = %s AND ip = %s
                  AND recorded_at >= %s AND recorded_at < %s)""" if with_ip else "FALSE"  # noqa: S608
    return f"""
       (SELECT COUNT(*) FROM {grants}
         WHERE user_id = %s AND source IN ({sources}) AND activated_at >= %s),
       EXISTS (SELECT 1 FROM {shifts}),
       EXISTS (SELECT 1 FROM {shifts} WHERE user_id = %s AND starts_at <= %s AND ends_at > %s),
       EXISTS (SELECT 1 FROM {grants}
                WHERE user_id = %s AND group_id = %s AND activated_at IS NOT NULL),
       {familiar}"""  # noqa: S608 (names only)


def describe(flags: list[str]) -> list[str]:
    return [FLAGS.get(flag, flag) for flag in flags]

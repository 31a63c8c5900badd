"""Anomaly flags raised when break glass activates (SPEC §2.7). They are stored on the grant
and its audit event, shown in the alerts, and make the alert high priority: security reviewers
then get an SMS even where the rule cell alerts by email only."""

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

FREQUENT_USES = 3  # more than this many in the window is flagged

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


def flags_from(answers, *, now: datetime, ip: str) -> list[str]:
    """The flags of an activation at `now` from the answers to their questions (recent uses,
    any shift at all, on call now, accessed before, address familiar), which breakglass asks
    within its locking read (breakglass.sql.FlagAnswers)."""
    flags = []
    if answers.recent_uses >= FREQUENT_USES:
        flags.append("frequent_use")
    # Only a deployment with on-call shifts can tell who is not on call.
    if answers.any_shift and not answers.on_call:
        flags.append("not_on_call")
    if not answers.accessed_before:
        flags.append("first_access")
    if ip and not answers.familiar_ip:
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


def describe(flags: list[str]) -> list[str]:
    return [FLAGS.get(flag, flag) for flag in flags]

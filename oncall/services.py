"""Changes to on-call shifts: replacing a schedule's coming shifts (the API's import) locks
the schedule, checks every row, writes the shifts with their history and records its audit
event, in one transaction. The overlap rules here are shared with the admin's inline."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from audit.catalogue import EventKind
from audit.services import record
from oncall.models import Schedule, Shift

MAX_SHIFTS = 1000


class ScheduleError(Exception):
    """Rows that cannot become shifts; `field` names the row, like `shifts[3].user`."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Slot:
    """A shift as proposed by a caller (`position` in its list) or kept (`position` -1),
    with the label the caller knows it by: "shifts[3]", "row 4", "the ended shift ..."."""

    position: int
    label: str
    user: User
    starts_at: datetime
    ends_at: datetime


def first_overlap(slots: Iterable[Slot]) -> tuple[Slot, Slot] | None:
    """A proposed slot that overlaps another slot of the same user, with that other slot;
    of two proposed slots, the later in the caller's list is the one blamed.

    Each user's slots are swept by start time, remembering the one that ends last so far:
    a slot overlaps an earlier one exactly when it starts before that end."""
    latest = None
    for slot in sorted(slots, key=lambda slot: (slot.user.pk, slot.starts_at, slot.ends_at)):
        if latest is None or latest.user.pk != slot.user.pk:
            latest = slot
            continue
        if slot.starts_at < latest.ends_at and max(slot.position, latest.position) >= 0:
            return (slot, latest) if slot.position > latest.position else (latest, slot)
        if slot.ends_at > latest.ends_at:
            latest = slot
    return None


def ended_shift_slots(shifts: Iterable[Shift]) -> list[Slot]:
    """Slots for shifts that have ended, which no proposed slot may overlap."""
    return [Slot(-1, f"the ended shift from {shift.starts_at:%Y-%m-%d %H:%M} to "
                     f"{shift.ends_at:%Y-%m-%d %H:%M} UTC", shift.user, shift.starts_at,
                 shift.ends_at) for shift in shifts]


@transaction.atomic
def replace_coming_shifts(schedule: Schedule, rows: list[dict], *, actor,
                          request: HttpRequest | None = None) -> list[Shift]:
    """Replace every shift of `schedule` that has not ended (ongoing and future) with `rows`,
    each {"user": username, "starts_at": aware datetime, "ends_at": aware datetime}; shifts
    that have ended stay as the record. Returns the coming shifts, by start time.

    Every row is checked before anything is written: the first problem raises ScheduleError
    naming its row, and nothing changes. Rows equal to the coming shifts are a no-op.
    Otherwise each removed and added shift gets a history row (with the acting user, if
    the actor is one) and one SHIFTS_REPLACED event is recorded.
    """
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    now = timezone.now()
    slots = _proposed_slots(rows, now)
    _refuse_overlaps([*slots, *_ended_slots(schedule, slots, now)])
    coming = list(schedule.shifts.coming(now).select_related("user"))
    if _as_keys(coming) == _as_keys(slots):
        return coming
    history_user = actor if isinstance(actor, User) else None
    for shift in coming:
        shift._history_user = history_user
        shift.delete()
    added = [_add_shift(schedule, slot, history_user)
             for slot in sorted(slots, key=lambda slot: (slot.starts_at, slot.position))]
    record(EventKind.SHIFTS_REPLACED, actor=actor, target=schedule, request=request,
           data={"removed": len(coming), "added": len(added)})
    return added


def _proposed_slots(rows: list[dict], now: datetime) -> list[Slot]:
    if len(rows) > MAX_SHIFTS:
        raise ScheduleError("shifts", f"at most {MAX_SHIFTS} shifts at a time, not {len(rows)}")
    # PostgreSQL refuses NUL in a query parameter; no username holds one.
    names = {row["user"] for row in rows if "\x00" not in row["user"]}
    users = {user.username: user
             for user in User.objects.filter(username__in=names, is_active=True)}
    return [_proposed_slot(position, row, users, now) for position, row in enumerate(rows)]


def _proposed_slot(position: int, row: dict, users: dict[str, User], now: datetime) -> Slot:
    label = f"shifts[{position}]"
    user = users.get(row["user"])
    if user is None:
        raise ScheduleError(f"{label}.user", f"no active user named {row['user']!r}")
    starts_at = _in_utc(row["starts_at"], f"{label}.starts_at")
    ends_at = _in_utc(row["ends_at"], f"{label}.ends_at")
    if ends_at < starts_at:
        raise ScheduleError(f"{label}.ends_at", "ends before it starts")
    if ends_at == starts_at:
        raise ScheduleError(f"{label}.ends_at", "ends as it starts")
    if ends_at <= now:
        raise ScheduleError(f"{label}.ends_at", "has already ended")
    return Slot(position, label, user, starts_at, ends_at)


def _in_utc(moment: datetime, field: str) -> datetime:
    if timezone.is_naive(moment):
        raise ScheduleError(field, "needs a time zone offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
        raise ScheduleError(field, "is out of range") from None


def _ended_slots(schedule: Schedule, slots: list[Slot], now: datetime) -> list[Slot]:
    """The ended shifts a proposed one could overlap: it may have started in the past."""
    if not slots:
        return []
    earliest = min(slot.starts_at for slot in slots)
    ended = schedule.shifts.filter(ends_at__lte=now, ends_at__gt=earliest,
                                   user__in={slot.user.pk for slot in slots})
    return ended_shift_slots(ended.select_related("user"))


def _refuse_overlaps(slots: list[Slot]) -> None:
    overlap = first_overlap(slots)
    if overlap is not None:
        blamed, other = overlap
        raise ScheduleError(f"{blamed.label}.starts_at",
                            f"overlaps {other.label} for {blamed.user.get_username()}")


def _as_keys(shifts: Iterable[Shift | Slot]) -> set[tuple]:
    return {(shift.user.pk, shift.starts_at, shift.ends_at) for shift in shifts}


def _add_shift(schedule: Schedule, slot: Slot, history_user: User | None) -> Shift:
    shift = Shift(schedule=schedule, user=slot.user, starts_at=slot.starts_at,
                  ends_at=slot.ends_at)
    shift._history_user = history_user  # simple-history's documented way to name the user
    shift.save()
    return shift

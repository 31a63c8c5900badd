"""Replacing a schedule's coming shifts (the import's service), and who is on call."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.services.applications import create_application
from oncall.models import Shift
from oncall.services import MAX_SHIFTS, ScheduleError, replace_coming_shifts
from tests.oncall.conftest import hours_from_now, row, time_passes

pytestmark = pytest.mark.django_db


def shifts_of(schedule) -> list[tuple]:
    return list(schedule.shifts.order_by("starts_at").values_list(
        "user__username", "starts_at", "ends_at"))


def test_replacing_keeps_ended_shifts_and_replaces_ongoing_and_future_ones(
        schedule, carol, dave, owner):
    replace_coming_shifts(schedule, [
        row("carol", 1, 2), row("carol", 5, 4), row("dave", 10, 2)], actor=owner)
    time_passes(6)  # carol's first shift has ended, her second is under way, dave's is coming
    ended = shifts_of(schedule)[0]
    assert list(schedule.on_call_now()) == [carol]

    new = replace_coming_shifts(schedule, [row("dave", 0, 8), row("carol", 8, 8)], actor=owner)

    assert [(shift.user, shift.ends_at - shift.starts_at) for shift in new] == [
        (dave, timedelta(hours=8)), (carol, timedelta(hours=8))]
    assert shifts_of(schedule) == [ended, *[(s.user.username, s.starts_at, s.ends_at)
                                            for s in new]]
    assert list(schedule.on_call_now()) == [dave]


def test_each_added_and_removed_shift_has_a_history_row_with_the_acting_user(
        schedule, carol, owner):
    first = replace_coming_shifts(schedule, [row("carol", 1, 8)], actor=owner)
    replace_coming_shifts(schedule, [row("carol", 2, 8)], actor=owner)
    history = Shift.history.order_by("history_id")
    assert [(h.history_type, h.id, h.history_user) for h in history][:2] == [
        ("+", first[0].pk, owner), ("-", first[0].pk, owner)]
    assert [(h.history_type, h.history_user) for h in history] == [
        ("+", owner), ("-", owner), ("+", owner)]


def test_an_application_leaves_history_rows_without_a_user_and_is_the_audited_actor(
        schedule, carol):
    application, _ = create_application("rota-sync", ["schedules:write"], actor=None)
    replace_coming_shifts(schedule, [row("carol", 1, 8)], actor=application)
    assert Shift.history.get().history_user is None
    event = AuditEvent.objects.get(kind=EventKind.SHIFTS_REPLACED)
    assert (event.actor_type, event.actor_id) == ("application", str(application.pk))


def test_one_audit_event_per_replacement_counts_removed_and_added_shifts(
        schedule, carol, dave, owner):
    replace_coming_shifts(schedule, [row("carol", 1, 8), row("dave", 9, 8)], actor=owner)
    replace_coming_shifts(schedule, [row("dave", 1, 8)], actor=owner)
    events = AuditEvent.objects.filter(kind=EventKind.SHIFTS_REPLACED).order_by("sequence")
    assert [(e.actor_label, e.target_type, e.target_id, e.target_label, e.data)
            for e in events] == [
        ("olivia", "oncall.schedule", str(schedule.pk), "Database on-call",
         {"removed": 0, "added": 2}),
        ("olivia", "oncall.schedule", str(schedule.pk), "Database on-call",
         {"removed": 2, "added": 1}),
    ]


def test_sending_the_coming_shifts_again_changes_nothing(schedule, carol, owner):
    rows = [row("carol", 1, 8), row("carol", 9, 8)]
    first = replace_coming_shifts(schedule, rows, actor=owner)
    again = replace_coming_shifts(schedule, rows, actor=owner)
    assert again == first
    assert AuditEvent.objects.filter(kind=EventKind.SHIFTS_REPLACED).count() == 1
    assert Shift.history.count() == 2


def test_no_rows_clear_the_coming_shifts(schedule, carol, owner):
    replace_coming_shifts(schedule, [row("carol", -1, 8)], actor=owner)
    assert replace_coming_shifts(schedule, [], actor=owner) == []
    assert shifts_of(schedule) == [] and list(schedule.on_call_now()) == []
    assert AuditEvent.objects.filter(kind=EventKind.SHIFTS_REPLACED).latest(
        "sequence").data == {"removed": 1, "added": 0}


def test_shifts_that_touch_do_not_overlap(schedule, carol, owner):
    start = hours_from_now(1)
    rows = [{"user": "carol", "starts_at": start, "ends_at": start + timedelta(hours=8)},
            {"user": "carol", "starts_at": start + timedelta(hours=8),
             "ends_at": start + timedelta(hours=16)}]
    assert len(replace_coming_shifts(schedule, rows, actor=owner)) == 2
    assert list(schedule.on_call_now(at=start + timedelta(hours=8))) == [carol]


def test_a_shift_covers_its_start_but_not_its_end(schedule, carol, dave, owner):
    shift, = replace_coming_shifts(schedule, [row("carol", 1, 8)], actor=owner)
    assert list(schedule.on_call_now(at=shift.starts_at)) == [carol]
    assert list(schedule.on_call_now(at=shift.ends_at - timedelta(microseconds=1))) == [carol]
    assert list(schedule.on_call_now(at=shift.ends_at)) == []
    assert list(schedule.on_call_now()) == []


def test_a_deactivated_user_is_not_on_call(schedule, carol, owner):
    replace_coming_shifts(schedule, [row("carol", -1, 8)], actor=owner)
    carol.is_active = False
    carol.save(update_fields=["is_active"])
    assert list(schedule.on_call_now()) == []


def test_times_in_any_offset_are_stored_in_utc(schedule, carol, owner):
    start = (timezone.now() + timedelta(days=1)).astimezone(
        timezone.get_fixed_timezone(-300)).replace(microsecond=0)
    shift, = replace_coming_shifts(
        schedule, [{"user": "carol", "starts_at": start, "ends_at": start + timedelta(hours=8)}],
        actor=owner)
    shift.refresh_from_db()
    assert shift.starts_at == start and shift.starts_at.utcoffset() == timedelta(0)


def _set_in_past(rows):
    rows[0]["ends_at"] = hours_from_now(-1)
    rows[0]["starts_at"] = hours_from_now(-9)


def _at(year: int, offset_minutes: int) -> datetime:
    return datetime(year, 1, 1, tzinfo=timezone.get_fixed_timezone(offset_minutes))


# Each case: the rows to send (carol and dave exist, zed does not, ivy is inactive), then
# the field and message of the refusal.
BAD_ROWS = {
    "unknown user": ([row("carol", 1, 8), row("zed", 1, 8)],
                     "shifts[1].user", "no active user named 'zed'"),
    "inactive user": ([row("ivy", 1, 8)], "shifts[0].user", "no active user named 'ivy'"),
    "NUL in a name": ([row("car\x00ol", 1, 8)], "shifts[0].user",
                      "no active user named 'car\\x00ol'"),
    "ends before it starts": ([row("carol", 1, 8), row("dave", 5, -1)],
                              "shifts[1].ends_at", "ends before it starts"),
    "ends as it starts": ([row("carol", 5, 0)], "shifts[0].ends_at", "ends as it starts"),
    "already ended": ([row("carol", -9, 8)], "shifts[0].ends_at", "has already ended"),
    "overlapping rows": ([row("carol", 1, 8), row("dave", 1, 8), row("carol", 8, 8)],
                         "shifts[2].starts_at", "overlaps shifts[0] for carol"),
    "overlap listed first": ([row("carol", 8, 8), row("carol", 1, 8)],
                             "shifts[1].starts_at", "overlaps shifts[0] for carol"),
    "one inside another": ([row("carol", 1, 20), row("dave", 2, 2), row("carol", 2, 2)],
                           "shifts[2].starts_at", "overlaps shifts[0] for carol"),
    "no time zone": ([{"user": "carol", "starts_at": datetime(2100, 1, 1),
                       "ends_at": datetime(2100, 1, 2, tzinfo=UTC)}],
                     "shifts[0].starts_at", "needs a time zone offset"),
    "before the first instant": ([{"user": "carol", "starts_at": _at(1, 60),
                                   "ends_at": _at(2100, 0)}],
                                 "shifts[0].starts_at", "is out of range"),
    "after the last instant": ([{"user": "carol", "starts_at": _at(2100, 0),
                                 "ends_at": datetime(9999, 12, 31, 23, 59, tzinfo=
                                                     timezone.get_fixed_timezone(-60))}],
                               "shifts[0].ends_at", "is out of range"),
}


def everything(schedule) -> tuple:
    return (shifts_of(schedule), Shift.history.count(),
            AuditEvent.objects.filter(kind=EventKind.SHIFTS_REPLACED).count())


@pytest.mark.parametrize(("rows", "field", "message"), BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_row_is_refused_by_name_and_changes_nothing(schedule, carol, dave, owner, rows,
                                                          field, message):
    User.objects.create_user("ivy", is_active=False)
    replace_coming_shifts(schedule, [row("carol", -1, 8)], actor=owner)
    before = everything(schedule)
    with pytest.raises(ScheduleError) as refused:
        replace_coming_shifts(schedule, rows, actor=owner)
    assert (refused.value.field, str(refused.value)) == (field, message)
    assert everything(schedule) == before


def test_a_shift_that_started_may_not_overlap_one_that_ended(schedule, carol, owner):
    replace_coming_shifts(schedule, [row("carol", 1, 2)], actor=owner)
    time_passes(4)  # carol's shift ended an hour ago
    ended, = schedule.shifts.all()
    before = everything(schedule)
    with pytest.raises(ScheduleError) as refused:
        replace_coming_shifts(schedule, [row("carol", -2, 8)], actor=owner)
    assert refused.value.field == "shifts[0].starts_at"
    assert str(refused.value) == (
        f"overlaps the ended shift from {ended.starts_at:%Y-%m-%d %H:%M} to "
        f"{ended.ends_at:%Y-%m-%d %H:%M} UTC for carol")
    assert everything(schedule) == before
    assert len(replace_coming_shifts(schedule, [row("carol", -1, 8)], actor=owner)) == 1


def test_more_than_1000_rows_are_refused_and_1000_are_taken(schedule, carol, owner):
    start = hours_from_now(1)
    rows = [{"user": "carol", "starts_at": start + timedelta(hours=n),
             "ends_at": start + timedelta(hours=n + 1)} for n in range(MAX_SHIFTS + 1)]
    with pytest.raises(ScheduleError) as refused:
        replace_coming_shifts(schedule, rows, actor=owner)
    assert (refused.value.field, str(refused.value)) == (
        "shifts", "at most 1000 shifts at a time, not 1001")
    assert everything(schedule) == ([], 0, 0)
    assert len(replace_coming_shifts(schedule, rows[:MAX_SHIFTS], actor=owner)) == MAX_SHIFTS

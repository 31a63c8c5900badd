"""The schedules part of the JSON API, mounted under /api/v1/schedules by api/main.py
(which holds the token check and answers every error as a problem detail naming the field)."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Router, Schema

from api.auth import require
from api.errors import Problem
from api.types import Text
from breakglass.models import Scope
from oncall import services
from oncall.models import Schedule, Shift

router = Router(tags=["schedules"])


class ShiftIn(Schema):
    user: Text = Field(max_length=150)
    starts_at: datetime
    ends_at: datetime


class ShiftsIn(Schema):
    shifts: list[ShiftIn]


class ShiftOut(Schema):
    user: str
    starts_at: datetime
    ends_at: datetime


class ScheduleShiftsOut(Schema):
    schedule: str
    shifts: list[ShiftOut]


@router.put("/{slug}/shifts", response=ScheduleShiftsOut, url_name="replace_shifts",
            summary="Replace a schedule's coming shifts (ended ones are kept)")
def replace_shifts(request: HttpRequest, slug: Text, body: ShiftsIn):
    application = require(request, Scope.SCHEDULES_WRITE)
    schedule = Schedule.objects.filter(slug=slug).first()
    if schedule is None:
        raise Problem("not-found", f"No schedule with slug {slug!r}.")
    rows = [row.model_dump() for row in body.shifts]
    shifts = services.replace_coming_shifts(schedule, rows, actor=application, request=request)
    return {"schedule": schedule.slug, "shifts": [_shift_out(shift) for shift in shifts]}


def _shift_out(shift: Shift) -> dict:
    return {"user": shift.user.get_username(), "starts_at": shift.starts_at,
            "ends_at": shift.ends_at}

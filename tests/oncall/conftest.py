"""On-call people and a schedule, and a clock that moves on."""

from datetime import datetime, timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from oncall.models import Schedule, Shift
from tests.conftest import make_user


@pytest.fixture
def carol(db) -> User:
    return make_user("carol")


@pytest.fixture
def dave(db) -> User:
    return make_user("dave")


@pytest.fixture
def schedule(db) -> Schedule:
    return Schedule.objects.create(name="Database on-call", slug="db-oncall")


def hours_from_now(hours: float) -> datetime:
    return timezone.now() + timedelta(hours=hours)


def row(username: str, starts_in: float, lasting: float) -> dict:
    """A shift for the service, `starts_in` hours from now (negative: already started)."""
    starts_at = hours_from_now(starts_in)
    return {"user": username, "starts_at": starts_at,
            "ends_at": starts_at + timedelta(hours=lasting)}


def time_passes(hours: float) -> None:
    """The clock moves on by `hours`, seen from the shifts: the service reads the wall clock,
    so every shift moves back instead (without history rows: nothing was edited)."""
    delta = timedelta(hours=hours)
    Shift.objects.update(starts_at=F("starts_at") - delta, ends_at=F("ends_at") - delta)

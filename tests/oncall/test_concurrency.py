"""PostgreSQL with real threads: simultaneous imports to one schedule queue on its row lock."""

import pytest

from audit.catalogue import EventKind
from audit.models import AuditEvent
from oncall.services import replace_coming_shifts
from tests.audit.test_concurrency import run_in_threads
from tests.oncall.conftest import row

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_simultaneous_imports_leave_one_whole_rota_never_a_mix(schedule, carol, dave, owner):
    rotas = [[row(name, 1 + n * 8 + index, 8) for n, name in enumerate(["carol", "dave"] * 5)]
             for index in range(8)]
    errors = run_in_threads(8, lambda index: replace_coming_shifts(
        schedule, rotas[index], actor=owner))
    assert errors == []
    stored = set(schedule.shifts.values_list("user__username", "starts_at", "ends_at"))
    assert stored in [{(r["user"], r["starts_at"], r["ends_at"]) for r in rota}
                      for rota in rotas]
    added = [event.data["added"] for event in
             AuditEvent.objects.filter(kind=EventKind.SHIFTS_REPLACED)]
    assert added == [10] * 8

"""Shifts in the admin: the schedule page's inline refuses what the import refuses."""

from datetime import datetime

import pytest
from django.urls import reverse

from oncall.models import Schedule, Shift
from oncall.services import replace_coming_shifts
from tests.oncall.conftest import hours_from_now, row, time_passes

pytestmark = pytest.mark.django_db


def _when(prefix: str, moment: datetime) -> dict:
    # The admin splits a date-time in two inputs, in the site's time zone (UTC).
    return {f"{prefix}_0": f"{moment:%Y-%m-%d}", f"{prefix}_1": f"{moment:%H:%M:%S}"}


def schedule_form(schedule: Schedule, shown: list[Shift], added: list[tuple]) -> dict:
    """The change form as the admin posts it: the shifts shown, then the rows added
    as (user, starts_at, ends_at)."""
    rows = [(shift.user, shift.starts_at, shift.ends_at) for shift in shown] + added
    data = {"name": schedule.name, "slug": schedule.slug, "description": "",
            "shifts-TOTAL_FORMS": str(len(rows)), "shifts-INITIAL_FORMS": str(len(shown)),
            "shifts-MIN_NUM_FORMS": "0", "shifts-MAX_NUM_FORMS": "1000"}
    for number, (user, starts_at, ends_at) in enumerate(rows):
        prefix = f"shifts-{number}"
        data.update({f"{prefix}-user": user.pk, f"{prefix}-schedule": schedule.pk,
                     **_when(f"{prefix}-starts_at", starts_at),
                     **_when(f"{prefix}-ends_at", ends_at)})
        if number < len(shown):
            data[f"{prefix}-id"] = shown[number].pk
    return data


def post_schedule(client, schedule: Schedule, shown: list[Shift], added: list[tuple]):
    return client.post(reverse("admin:oncall_schedule_change", args=[schedule.pk]),
                       schedule_form(schedule, shown, added))


def row_errors(response) -> list[list[str]]:
    formset = response.context["inline_admin_formsets"][0].formset
    return [[str(error) for errors in form.errors.values() for error in errors]
            for form in formset.forms]


def test_an_overlapping_row_is_refused_naming_the_row_it_overlaps(
        verified_client, admin_user, schedule, carol, dave):
    client = verified_client(admin_user)
    shown = replace_coming_shifts(schedule, [row("carol", 1, 8)], actor=admin_user)
    before = list(Shift.objects.values_list("pk", "user", "starts_at", "ends_at"))
    response = post_schedule(client, schedule, shown, [
        (dave, hours_from_now(2), hours_from_now(10)),
        (carol, hours_from_now(8), hours_from_now(12)),
    ])
    assert response.status_code == 200
    assert row_errors(response) == [[], [], ["Overlaps row 1 for carol."]]
    assert list(Shift.objects.values_list("pk", "user", "starts_at", "ends_at")) == before


def test_a_row_ending_before_it_starts_is_refused(verified_client, admin_user, schedule, carol):
    client = verified_client(admin_user)
    response = post_schedule(client, schedule, [], [
        (carol, hours_from_now(9), hours_from_now(1))])
    assert response.status_code == 200
    assert row_errors(response) == [["The shift must end after it starts."]]
    assert not Shift.objects.exists()


def test_a_row_may_not_overlap_an_ended_shift_the_inline_does_not_show(
        verified_client, admin_user, schedule, carol):
    client = verified_client(admin_user)
    replace_coming_shifts(schedule, [row("carol", 1, 2)], actor=admin_user)
    time_passes(4)
    ended = Shift.objects.get()
    page = client.get(reverse("admin:oncall_schedule_change", args=[schedule.pk]))
    assert page.context["inline_admin_formsets"][0].formset.initial_form_count() == 0
    response = post_schedule(client, schedule, [], [
        (carol, hours_from_now(-2), hours_from_now(6))])
    assert row_errors(response) == [[
        f"Overlaps the ended shift from {ended.starts_at:%Y-%m-%d %H:%M} to "
        f"{ended.ends_at:%Y-%m-%d %H:%M} UTC for carol."]]
    assert list(Shift.objects.all()) == [ended]


def test_a_row_added_in_the_past_is_refused(verified_client, admin_user, schedule, carol):
    client = verified_client(admin_user)
    response = post_schedule(client, schedule, [], [
        (carol, hours_from_now(-10), hours_from_now(-2))])
    assert row_errors(response) == [[
        "This shift has already ended; ended shifts are the record and are not changed."]]
    assert not Shift.objects.exists()


def test_valid_rows_are_saved_with_history_naming_the_admin_and_shown_as_on_call(
        verified_client, admin_user, schedule, carol, dave):
    client = verified_client(admin_user)
    response = post_schedule(client, schedule, [], [
        (carol, hours_from_now(-1), hours_from_now(7)),
        (dave, hours_from_now(7), hours_from_now(15))])
    assert response.status_code == 302, row_errors(response)
    assert [shift.user for shift in Shift.objects.all()] == [carol, dave]
    assert {h.history_user for h in Shift.history.all()} == {admin_user}
    changelist = client.get(reverse("admin:oncall_schedule_changelist"))
    assert changelist.status_code == 200
    assert b'<td class="field-on_call">carol</td>' in changelist.content

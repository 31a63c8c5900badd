"""PUT /api/v1/schedules/<slug>/shifts: the import of a schedule's coming shifts."""

import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Scope
from breakglass.services.applications import create_application
from oncall.models import Shift
from oncall.services import replace_coming_shifts
from tests.oncall.conftest import hours_from_now, row, time_passes

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(db) -> str:
    return create_application("rota-sync", [Scope.SCHEDULES_WRITE], actor=None)[1]


def put_shifts(client, slug: str, body, token: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.put(f"/api/v1/schedules/{slug}/shifts", json.dumps(body),
                      content_type="application/json", **headers)


def as_json(*rows: dict) -> dict:
    return {"shifts": [{**r, "starts_at": r["starts_at"].isoformat(),
                        "ends_at": r["ends_at"].isoformat()} for r in rows]}


def stored(schedule) -> list[tuple]:
    return list(schedule.shifts.values_list("user__username", "starts_at", "ends_at"))


def test_the_coming_shifts_are_replaced_and_returned_in_order(client, token, schedule, carol,
                                                               dave, owner):
    replace_coming_shifts(schedule, [row("carol", 1, 2), row("dave", 4, 2)], actor=owner)
    time_passes(3)  # carol's shift has ended; dave's is coming
    later, sooner = row("carol", 9, 8), row("dave", 1, 8)
    response = put_shifts(client, "db-oncall", as_json(later, sooner), token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["schedule"] == "db-oncall"
    assert [(s["user"], s["starts_at"][:16]) for s in body["shifts"]] == [
        ("dave", sooner["starts_at"].isoformat()[:16]),
        ("carol", later["starts_at"].isoformat()[:16])]
    assert [user for user, *_ in stored(schedule)] == ["carol", "dave", "carol"]
    event = AuditEvent.objects.filter(kind=EventKind.SHIFTS_REPLACED).latest("sequence")
    assert (event.actor_type, event.data) == ("application", {"removed": 1, "added": 2})


def test_without_a_token_it_is_401(client, schedule, carol):
    response = put_shifts(client, "db-oncall", as_json(row("carol", 1, 8)))
    assert response.status_code == 401
    assert response.json()["detail"] == "A valid bearer token is required."
    assert stored(schedule) == []


def test_a_token_without_the_scope_is_403(client, schedule, carol):
    others = [scope for scope in Scope.values if scope != Scope.SCHEDULES_WRITE]
    token = create_application("pager", others, actor=None)[1]
    response = put_shifts(client, "db-oncall", as_json(row("carol", 1, 8)), token)
    assert response.status_code == 403
    assert response.json()["detail"] == "This token lacks the schedules:write scope."
    assert stored(schedule) == []


def test_an_unknown_schedule_is_404_json(client, token, schedule, carol):
    response = put_shifts(client, "no-such-rota", as_json(row("carol", 1, 8)), token)
    assert response.status_code == 404
    assert response.json()["detail"] == "No schedule with slug 'no-such-rota'."


def test_a_bad_row_is_400_naming_it_and_nothing_changes(client, token, schedule, carol, owner):
    replace_coming_shifts(schedule, [row("carol", 1, 8)], actor=owner)
    before = (stored(schedule), Shift.history.count(), AuditEvent.objects.count())
    response = put_shifts(client, "db-oncall",
                          as_json(row("carol", 10, 8), row("carol", 20, 8), row("zed", 1, 8)),
                          token)
    assert response.status_code == 400
    assert response.json()["detail"] == "shifts[2].user: no active user named 'zed'"
    assert response.json()["errors"] == [{"field": "shifts[2].user", "in": "body",
                                          "message": "no active user named 'zed'"}]
    assert (stored(schedule), Shift.history.count(), AuditEvent.objects.count()) == before


@pytest.mark.parametrize(("body", "starts"), [
    ({"shifts": [{"user": "carol", "starts_at": "2100-01-01T00:00:00Z"}]}, "shifts[0].ends_at"),
    ({"shifts": [{"user": "ca\x00rol", "starts_at": "2100-01-01T00:00:00Z",
                  "ends_at": "2100-01-02T00:00:00Z"}]}, "shifts[0].user: must not contain NUL"),
    ({"shifts": [{"user": "carol", "starts_at": "tomorrow",
                  "ends_at": "2100-01-02T00:00:00Z"}]}, "shifts[0].starts_at"),
    ({"shifts": "carol"}, "shifts"),
    ({}, "shifts"),
    ({"shifts": [{"user": "carol", "starts_at": "2100-01-01T00:00:00",
                  "ends_at": "2100-01-02T00:00:00Z"}]}, "shifts[0].starts_at: needs a time zone"),
])
def test_an_invalid_body_is_400_naming_the_field(client, token, schedule, carol, body, starts):
    response = put_shifts(client, "db-oncall", body, token)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(starts)
    assert stored(schedule) == []


def test_a_nul_in_the_slug_is_400_not_a_database_error(client, token, schedule):
    response = put_shifts(client, "db%00oncall", {"shifts": []}, token)
    assert response.status_code == 400


def test_the_schema_lists_the_operation_under_schedules(client):
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/schedules/{slug}/shifts"]["put"]
    assert operation["tags"] == ["schedules"]


# Generated bodies: some shaped like the real thing with odd values in every place (NUL,
# huge numbers, dates at the ends of the calendar and odd offsets), the rest anything at all.
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
OFFSET = st.integers(-24 * 60 + 1, 24 * 60 - 1).map(
    lambda m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}")
SOON = st.builds(lambda hours: (timezone.now() + timedelta(hours=hours)).isoformat(),
                 st.integers(-48, 24 * 365))
MOMENT = st.one_of(
    SOON,
    st.builds(lambda day, offset: f"{day.isoformat()}{offset}",
              st.datetimes(), st.one_of(OFFSET, st.just("Z"), st.just(""))),
    st.sampled_from(["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59",
                     "2100-02-30T00:00:00Z", "2100-01-01T24:00:00Z", "1e309", "-0"]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT, st.none(),
)
VALUE = st.one_of(TEXT, st.integers(), st.none(), st.booleans(), st.lists(TEXT, max_size=2))
ROW = st.fixed_dictionaries(
    {"user": st.one_of(st.sampled_from(["carol", "dave", "zed", "", "car\x00ol"]), VALUE),
     "starts_at": MOMENT, "ends_at": MOMENT},
    optional={"extra": VALUE},
)
WELL_FORMED = st.lists(st.fixed_dictionaries(
    {"user": st.sampled_from(["carol", "dave"]), "starts_at": SOON, "ends_at": SOON}), max_size=4)
BODY = st.one_of(
    st.fixed_dictionaries({"shifts": WELL_FORMED}),
    st.fixed_dictionaries({"shifts": st.lists(ROW, max_size=5)}),
    st.fixed_dictionaries({"shifts": st.one_of(VALUE, st.dictionaries(TEXT, VALUE, max_size=2),
                                               st.lists(VALUE, max_size=3))}),
    st.dictionaries(TEXT, VALUE, max_size=3),
    VALUE,
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODY, slug=st.one_of(st.just("db-oncall"), st.just("db-oncall"), TEXT))
def test_generated_bodies_never_cause_a_500(client, token, schedule, carol, dave, body, slug):
    response = client.put(f"/api/v1/schedules/{quote(slug, safe='')}/shifts", json.dumps(body),
                          content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code in {200, 400, 404}, response.content[:300]


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"null", b"[]", b'{"shifts": [' * 200,
                                 b'{"shifts": [{"user": "carol", "starts_at": 1e999}]}'])
def test_bodies_that_are_not_the_json_object_are_400(client, token, schedule, raw):
    response = client.put("/api/v1/schedules/db-oncall/shifts", raw,
                          content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400


def test_a_long_rota_is_taken_in_one_call(client, token, schedule, carol, dave):
    rows = [row("carol" if n % 2 else "dave", 1 + n * 8, 8) for n in range(300)]
    response = put_shifts(client, "db-oncall", as_json(*rows), token)
    assert response.status_code == 200 and len(response.json()["shifts"]) == 300
    assert schedule.shifts.filter(starts_at__gte=hours_from_now(0)).count() == 300
